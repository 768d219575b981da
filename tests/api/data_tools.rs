//! `import` and `export` with the real binary against a real server: the examples of
//! docs/examples import in both formats, reruns are replays, dry runs store nothing,
//! bad lines are named, and every export format carries the reports.

use std::{path::Path, process::Command};

use partnership_metrics::cli::examples;

use crate::e2e::Server;

const BIN: &str = env!("CARGO_BIN_EXE_partnership-metrics");

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run the binary")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `export --period P --format F --out FILE [extra...]`, which must succeed.
fn export_to(target: &str, period: &str, format: &str, out: &str, extra: &[&str]) {
    let mut args = vec!["export", "--target", target, "--period", period, "--format", format, "--out", out];
    args.extend_from_slice(extra);
    ok(&args);
}

fn summary(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(&all)).expect("the summary is JSON")
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["csv", "ndjson"] {
        let mut names: Vec<_> =
            std::fs::read_dir(dir.join(sub)).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            out.push((
                format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn the_committed_examples_are_what_the_demo_data_gives() {
    let fresh = tempfile::tempdir().unwrap();
    examples::write(fresh.path(), examples::config()).unwrap();
    if std::env::var_os("PM_UPDATE_EXAMPLES").is_some() {
        examples::write(&examples_dir(), examples::config()).unwrap();
    }
    let committed = files_of(&examples_dir());
    let generated = files_of(fresh.path());
    assert_eq!(
        committed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        generated.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in committed.iter().zip(&generated) {
        assert!(
            a == b,
            "docs/examples/{name} is stale: run PM_UPDATE_EXAMPLES=1 cargo test --test api examples"
        );
    }
}

/// CSV and NDJSON of the same data give the same reports; a rerun stores nothing.
#[test]
fn examples_import_in_both_formats_and_reruns_are_replays() {
    let csv_server = Server::start();
    let nd_server = Server::start();
    let csv_target = format!("http://{}", csv_server.addr);
    let nd_target = format!("http://{}", nd_server.addr);
    let csv_dir = examples_dir().join("csv");
    let csv_dir = csv_dir.as_path();
    let nd_dir = examples_dir().join("ndjson");
    let records = std::fs::read_to_string(nd_dir.join("records.ndjson")).unwrap().lines().count() as u64;

    // A dry run on an empty server: the registry is checked; the records all name
    // agencies it would create, so they are checked locally only.
    let dir = csv_dir.to_str().unwrap();
    let dry = summary(&["import", "--target", &csv_target, "--dry-run", dir]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!((dry["agencies_created"].as_u64(), dry["partnerships_created"].as_u64()), (Some(14), Some(2)));
    assert_eq!(dry["problems"], 0, "{dry}");
    assert_eq!(dry["checked_after_registry"], records, "{dry}");
    let listed = ok(&["export", "--target", &csv_target, "--period", "2026Q3", "--format", "ndjson"]);
    assert_eq!(listed, "", "a dry run created partnerships");

    // With the registry in place, a dry run has the server check every record and
    // answer as the write would.
    let registry: Vec<String> = ["agencies.csv", "partnerships.csv", "memberships.csv"]
        .iter()
        .map(|f| csv_dir.join(f).to_str().unwrap().to_string())
        .collect();
    let mut args = vec!["import", "--target", csv_target.as_str()];
    args.extend(registry.iter().map(String::as_str));
    let reg = summary(&args);
    assert_eq!(reg["memberships_created"], 8, "{reg}");
    let dry = summary(&["import", "--target", &csv_target, "--dry-run", "--batch-size", "100", dir]);
    assert_eq!(dry["registry_unchanged"], 24, "{dry}");
    // Endorsements of the versions the import adopts wait for those adoptions.
    let endorsements =
        std::fs::read_to_string(csv_dir.join("principles_endorsements.csv")).unwrap().lines().count() as u64
            - 1;
    assert_eq!(
        (dry["inserted"].as_u64(), dry["checked_after_registry"].as_u64()),
        (Some(records - endorsements), Some(endorsements)),
        "{dry}"
    );

    let first = summary(&["import", "--target", &csv_target, "--batch-size", "100", dir]);
    assert_eq!(first["records"], records, "{first}");
    assert_eq!(first["inserted"], records, "the dry runs stored nothing: {first}");
    assert_eq!((first["rejected"].as_u64(), first["replayed_batches"].as_u64()), (Some(0), Some(0)));
    assert_eq!(first["registry_unchanged"], 24);

    // The same files again: every batch is a replay, the registry is unchanged.
    let again =
        summary(&["import", "--target", &csv_target, "--batch-size", "100", csv_dir.to_str().unwrap()]);
    assert_eq!(again["replayed_batches"], first["batches"], "{again}");
    assert_eq!(again["replayed_records"], records);
    assert_eq!(again["agencies_created"], 0);
    assert_eq!(again["registry_unchanged"], 24);
    assert_eq!((again["inserted"].as_u64(), again["replaced"].as_u64()), (Some(0), Some(0)), "{again}");

    let nd = summary(&["import", "--target", &nd_target, nd_dir.to_str().unwrap()]);
    assert_eq!(nd["inserted"], records, "{nd}");

    for period in ["2026Q3", "2025"] {
        let a = ok(&["export", "--target", &csv_target, "--period", period, "--format", "ndjson"]);
        let b = ok(&["export", "--target", &nd_target, "--period", period, "--format", "ndjson"]);
        assert_eq!(a.lines().count(), 2, "two partnerships");
        assert_eq!(a, b, "CSV and NDJSON of the same data give the same reports");
    }
}

#[test]
fn bad_lines_are_named_and_the_rest_is_stored() {
    let server = Server::start();
    let target = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    for f in ["agencies.csv", "partnerships.csv", "memberships.csv"] {
        std::fs::copy(examples_dir().join("csv").join(f), dir.path().join(f)).unwrap();
    }
    let original = std::fs::read_to_string(examples_dir().join("csv/workforce_returns.csv")).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let leavers = header.iter().position(|c| *c == "leavers").unwrap();
    let joiners = header.iter().position(|c| *c == "joiners").unwrap();
    // Line 3: leavers beyond what the headcount allows (a server check);
    // line 5: not a number (a local check).
    let mut cells: Vec<String> = lines[2].split(',').map(str::to_string).collect();
    cells[leavers] = "999999".into();
    lines[2] = cells.join(",");
    let mut cells: Vec<String> = lines[4].split(',').map(str::to_string).collect();
    cells[joiners] = "many".into();
    lines[4] = cells.join(",");
    let path = dir.path().join("workforce_returns.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let out =
        run(&["import", "--target", &target, "--batch-size", "10", "--json", dir.path().to_str().unwrap()]);
    assert!(!out.status.success(), "an import with bad lines must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(stderr.contains(&format!("{file}:3: workforce_return.leavers: ")), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:5: workforce_return.joiners: \"many\" is not an integer")),
        "{stderr}"
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = lines.len() as u64 - 1;
    // Line 5 is refused before sending; the first batch (lines 2-12 without it) is
    // rejected whole for line 3; the rest is stored.
    assert_eq!(s["rejected"], 11, "{s}");
    assert_eq!(s["inserted"], rows - 11, "{s}");
    assert_eq!(s["problems"], 2, "{s}");

    // A dry run of a file naming an unknown agency says so by line.
    let bad = dir.path().join("restructuring_events.csv");
    std::fs::write(&bad, "agency,event_id,date,kind,staff_affected\nghost-agency,e1,2026-01-01,merger,3\n")
        .unwrap();
    let out = run(&["import", "--target", &target, "--dry-run", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:2: restructuring_event.agency: ", bad.display())), "{stderr}");
}

#[test]
fn every_export_format_carries_the_reports() {
    let server = Server::start();
    let target = format!("http://{}", server.addr);
    ok(&["import", "--target", &target, examples_dir().join("ndjson").to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    let ndjson = ok(&["export", "--target", &target, "--period", "2026Q3", "--format", "ndjson"]);
    let reports: Vec<serde_json::Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), 2);
    let indicators = reports[0]["indicators"].as_array().unwrap().len();

    // CSV: the PSI, seven domains and every indicator, per partnership.
    let csv = ok(&["export", "--target", &target, "--period", "2026Q3"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        partnership_metrics::cli::export::ROW_COLUMNS
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2 * (1 + 7 + indicators));
    let psi = rows.iter().find(|r| &r[3] == "index" && r[0] == reports[0]["partnership"]).unwrap();
    // Exact: the CSV's text is the JSON's number (compared as text: serde_json's
    // default float parsing may be one unit in the last place off).
    let first_line = ndjson.lines().next().unwrap();
    let at = first_line.find("\"psi\":").unwrap() + 6;
    let json_psi: f64 = first_line[at..].split([',', '}']).next().unwrap().parse().unwrap();
    assert_eq!(psi[6].parse::<f64>().unwrap(), json_psi, "exact");
    let alerts = ok(&["export", "--target", &target, "--period", "2026Q3", "--table", "alerts"]);
    let total: usize = reports.iter().map(|r| r["alerts"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(alerts.lines().count(), 1 + total);

    // Parquet: typed columns, nulls as nulls, the same rows.
    export_to(&target, "2026Q3", "parquet", &file("r.parquet"), &[]);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file("r.parquet")).unwrap(),
    )
    .unwrap();
    let schema = reader.schema().clone();
    assert_eq!(schema.field_with_name("value").unwrap().data_type(), &arrow_schema::DataType::Float64);
    assert_eq!(schema.field_with_name("records_used").unwrap().data_type(), &arrow_schema::DataType::Int64);
    let batches: Vec<_> = reader.build().unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), rows.len());
    let blank_values = rows.iter().filter(|r| r[6].is_empty()).count();
    let null_values: usize = batches.iter().map(|b| b.column_by_name("value").unwrap().null_count()).sum();
    assert_eq!(null_values, blank_values, "a missing value is a null");

    // DHIS2 with the example mapping, which covers every item a report has.
    let mapping = examples_dir().join("dhis2-mapping.json");
    let items: Vec<String> = rows.iter().filter(|r| r[0] == rows[0][0]).map(|r| r[4].to_string()).collect();
    if std::env::var_os("PM_UPDATE_EXAMPLES").is_some() {
        let text =
            serde_json::to_string_pretty(&examples::dhis2_mapping(examples::config(), &items)).unwrap();
        std::fs::write(&mapping, text + "\n").unwrap();
    }
    export_to(
        &target,
        "2026Q3",
        "dhis2",
        &file("dhis2.json"),
        &["--dhis2-mapping", mapping.to_str().unwrap()],
    );
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file("dhis2.json")).unwrap()).unwrap();
    let present = rows.iter().filter(|r| !r[6].is_empty() || !r[7].is_empty()).count();
    assert_eq!(set["dataValues"].as_array().unwrap().len(), present, "every present value, mapped");
    export_to(&target, "2026Q3", "fhir", &file("fhir.json"), &[]);
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file("fhir.json")).unwrap()).unwrap();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
    assert_eq!(bundle["entry"][0]["resource"]["group"].as_array().unwrap().len(), 8);

    // An incomplete mapping is reported, not silently dropped.
    let partial = dir.path().join("partial.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mapping).unwrap()).unwrap();
    m["dataElements"].as_object_mut().unwrap().remove("PSI");
    std::fs::write(&partial, m.to_string()).unwrap();
    let out = run(&[
        "export",
        "--target",
        &target,
        "--period",
        "2026Q3",
        "--format",
        "dhis2",
        "--dhis2-mapping",
        partial.to_str().unwrap(),
        "--out",
        &file("partial-out.json"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("item PSI has no dataElement"), "{out:?}");

    // The committed mapping covers every item a report has.
    let items: Vec<String> = rows.iter().filter(|r| r[0] == rows[0][0]).map(|r| r[4].to_string()).collect();
    if std::env::var_os("PM_UPDATE_EXAMPLES").is_some() {
        let text =
            serde_json::to_string_pretty(&examples::dhis2_mapping(examples::config(), &items)).unwrap();
        std::fs::write(&mapping, text + "\n").unwrap();
    }
    assert_eq!(
        examples::dhis2_mapping(examples::config(), &items),
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&mapping).unwrap()).unwrap(),
        "docs/examples/dhis2-mapping.json is stale"
    );
}

#[test]
#[cfg_attr(not(pm_test_python), ignore = "PM_TEST_PYTHON is not set; scripts/test provides it")]
fn dhis2_and_fhir_exports_pass_the_interop_validators() {
    let server = Server::start();
    let target = format!("http://{}", server.addr);
    ok(&["import", "--target", &target, examples_dir().join("csv").to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let dhis2 = dir.path().join("dhis2.json").to_str().unwrap().to_string();
    let fhir = dir.path().join("fhir.json").to_str().unwrap().to_string();
    let mapping = examples_dir().join("dhis2-mapping.json");
    for period in ["2026Q3", "2025", "202609", "2025April"] {
        export_to(&target, period, "dhis2", &dhis2, &["--dhis2-mapping", mapping.to_str().unwrap()]);
        export_to(&target, period, "fhir", &fhir, &[]);
        let python = crate::e2e::tool("PM_TEST_PYTHON");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/validate_interop.py");
        let out =
            Command::new(python).arg(script).args(["--dhis2", &dhis2, "--fhir", &fhir]).output().unwrap();
        assert!(
            out.status.success(),
            "the interop validators refused the {period} exports:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
