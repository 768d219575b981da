//! The Python client of `clients/python` (installed into the test venv by
//! `scripts/test-tools`), tested by its own pytest suite against the real binary.

use std::process::{Command, Output};

use crate::e2e::{Server, tool};

/// Runs pytest on `path` (relative to the repository) with `env`, asserts it passed,
/// and returns its output.
fn pytest(path: &str, env: &[(&str, String)]) -> Output {
    let out = Command::new(tool("PM_TEST_PYTHON"))
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", path])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run pytest");
    assert!(
        out.status.success(),
        "the Python client's tests failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
#[cfg_attr(not(pm_test_python), ignore = "PM_TEST_PYTHON is not set; scripts/test provides it")]
fn the_python_client_passes_its_tests_against_the_real_server() {
    let server = Server::start();
    pytest("clients/python/tests", &[("PM_TARGET", server.addr.clone())]);
    assert!(server.terminate().success(), "the server exits cleanly on SIGTERM");
}

/// The same client against a server with TLS and tokens, as the README's "Secure it"
/// sets one up: it checks the certificate with the CA (and under another name), and
/// sends each role's token.
#[test]
#[cfg_attr(not(pm_test_python), ignore = "PM_TEST_PYTHON is not set; scripts/test provides it")]
fn the_python_client_speaks_tls_and_sends_bearer_tokens() {
    let bin = env!("CARGO_BIN_EXE_partnership-metrics");
    let creds = tempfile::tempdir().unwrap();
    let c = |name: &str| creds.path().join(name).display().to_string();
    let made = Command::new(bin)
        .args(["dev-credentials", "--out", &c(""), "--server-name", "pm.cluster.internal"])
        .output()
        .unwrap();
    assert!(made.status.success(), "dev-credentials failed: {}", String::from_utf8_lossy(&made.stderr));
    let security = [
        ("PM_TLS_CERT", c("server.pem")),
        ("PM_TLS_KEY", c("server.key")),
        ("PM_JWT_JWKS", c("jwks.json")),
        ("PM_JWT_ISSUER", "https://dev-idp.partnership-metrics.local".to_string()),
        ("PM_JWT_AUDIENCE", "partnership-metrics".to_string()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("secure.db").display());
    let server = Server::start_with(&url, dir, "127.0.0.1:0", &[], &security);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    let out = pytest(
        "clients/python/tests/test_secure.py",
        &[
            ("PM_TARGET", format!("localhost:{port}")),
            ("PM_TEST_CREDENTIALS", c("")),
            ("PM_TEST_BIN", bin.to_string()),
        ],
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(!summary.contains("skipped"), "the secure tests ran, none skipped:\n{summary}");
    assert!(server.terminate().success(), "the server exits cleanly on SIGTERM");
}
