//! Generates the `partnership.v1` Rust code from `proto/` with protox (pure Rust, so no
//! system `protoc` is needed) and writes the encoded descriptor set that the reflection
//! service serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "partnership/v1/registry.proto",
    "partnership/v1/records.proto",
    "partnership/v1/submission.proto",
    "partnership/v1/reports.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds the migrations; a new file must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    // Tests that need an outside server or tool are marked ignored when the variable
    // naming it is unset, so the runner reports them as skipped rather than passed.
    for (var, cfg) in [
        ("PM_TEST_POSTGRES_URL", "pm_test_postgres"),
        ("PM_TEST_BUF", "pm_test_buf"),
        ("PM_TEST_PYTHON", "pm_test_python"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    let mut compiler = protox::Compiler::new(["proto"])?;
    // Source info keeps the .proto comments, so generated code and reflection carry
    // the field documentation.
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("partnership_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        // google.rpc.Status comes from tonic-types, so error details built with its
        // richer-error helpers fit IngestRecordsResponse.rejected without conversion.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
