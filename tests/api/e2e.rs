//! End to end: the real binary, driven by clients nobody here wrote (`buf curl` through
//! reflection, and Python grpcio with code generated from proto/ at test time).
//!
//! The tools come from `scripts/test` (npm `@bufbuild/buf`, a Python venv); it passes
//! their paths in `PM_TEST_BUF` and `PM_TEST_PYTHON`. Without them these tests say so
//! and skip.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The path a tool variable names. A test that calls this is ignored when the
/// variable was unset at build time (cfg `pm_test_buf`, `pm_test_python`), so an unset
/// variable now is a mistake, not a skip.
pub fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("{var} was set when the tests were built but is not set now; run scripts/test"),
    }
}

/// The `partnership-metrics serve` binary on a fresh database and a free port.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Every line the server has logged so far (JSON).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// On a fresh SQLite database.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("e2e.db").display());
        Server::start_on(&url, dir, &[])
    }

    /// On the database `url` names, with extra `serve` flags.
    pub fn start_on(url: &str, dir: tempfile::TempDir, flags: &[&str]) -> Server {
        Server::start_with(url, dir, "127.0.0.1:0", flags, &[])
    }

    /// On `listen`, with extra flags and environment variables.
    pub fn start_with(
        url: &str,
        dir: tempfile::TempDir,
        listen: &str,
        flags: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_partnership-metrics"))
            .args(["--log-format", "json", "serve", "--listen", listen, "--shutdown-grace-secs", "5"])
            .args(flags)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        // The JSON log line "serving" carries the bound address.
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("server exited before serving").unwrap();
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                panic!("log line is not JSON: {line}");
            };
            if json["fields"]["message"] == "serving" {
                break json["fields"]["local_addr"].as_str().unwrap().to_string();
            }
        };
        // Keep draining the logs so the server never blocks on a full pipe.
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line);
                }
            }
        });
        Server { child, addr, logs, _dir: dir }
    }

    /// SIGTERM, then the exit status within the grace period.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn buf_curl(buf: &PathBuf, addr: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(buf)
        .args(["curl", "--protocol", "grpc", "--http2-prior-knowledge"])
        .args(args)
        .arg(format!("http://{addr}"))
        .output()
        .expect("run buf curl");
    assert!(out.status.success(), "buf curl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

fn call(buf: &PathBuf, addr: &str, method: &str, body: serde_json::Value) -> serde_json::Value {
    let out = Command::new(buf)
        .args(["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", &body.to_string()])
        .arg(format!("http://{addr}/{method}"))
        .output()
        .expect("run buf curl");
    assert!(out.status.success(), "buf curl {method} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[cfg_attr(not(pm_test_buf), ignore = "PM_TEST_BUF is not set; scripts/test provides it")]
fn buf_curl_creates_lists_and_reads_error_details_through_reflection() {
    let buf = tool("PM_TEST_BUF");
    let server = Server::start();
    let methods = buf_curl(&buf, &server.addr, &["--list-methods"]);
    let methods = methods.as_str().unwrap();
    for m in [
        "partnership.v1.RegistryService/CreateAgency",
        "partnership.v1.RegistryService/ListMemberships",
        "partnership.v1.SubmissionService/IngestRecords",
        "partnership.v1.ReportService/ExportReports",
        "grpc.health.v1.Health/Check",
    ] {
        assert!(methods.lines().any(|l| l == m), "{m} not listed:\n{methods}");
    }

    const REGISTRY: &str = "partnership.v1.RegistryService";
    for (id, sector) in [
        ("nhs-a", "SECTOR_NHS_BODY"),
        ("la-b", "SECTOR_LOCAL_AUTHORITY"),
        ("vol-c", "SECTOR_VOLUNTARY_OR_COMMUNITY_ORGANISATION"),
    ] {
        let created = call(
            &buf,
            &server.addr,
            &format!("{REGISTRY}/CreateAgency"),
            serde_json::json!({"agencyId": id, "agency": {"displayName": id.to_uppercase(), "sector": sector}}),
        );
        assert_eq!(created["name"], format!("agencies/{id}"));
    }
    call(
        &buf,
        &server.addr,
        &format!("{REGISTRY}/CreatePartnership"),
        serde_json::json!({"partnershipId": "pa", "partnership": {"displayName": "PA"}}),
    );
    for (agency, role) in [("nhs-a", "ROLE_LEAD"), ("la-b", "ROLE_MEMBER"), ("vol-c", "ROLE_MEMBER")] {
        call(
            &buf,
            &server.addr,
            &format!("{REGISTRY}/CreateMembership"),
            serde_json::json!({"parent": "partnerships/pa", "membership": {"agency": agency, "role": role, "startDate": "2024-01-01"}}),
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = call(
            &buf,
            &server.addr,
            &format!("{REGISTRY}/ListMemberships"),
            serde_json::json!({"parent": "partnerships/pa", "pageSize": 2, "pageToken": token}),
        );
        for m in page["memberships"].as_array().unwrap() {
            seen.push(m["agency"].as_str().unwrap().to_string());
        }
        match page["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    assert_eq!(seen, ["la-b", "nhs-a", "vol-c"]);

    // A rejected unary call: buf prints the status as JSON on stderr; the ErrorInfo is
    // there (buf curl itself decodes details only of streamed messages).
    let out = Command::new(&buf)
        .args(["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d"])
        .arg(r#"{"name": "agencies/nobody"}"#)
        .arg(format!("http://{}/{REGISTRY}/GetAgency", server.addr))
        .output()
        .expect("run buf curl");
    assert!(!out.status.success());
    let status: serde_json::Value =
        serde_json::from_slice(&out.stderr).expect("buf prints the status as JSON");
    assert_eq!(status["code"], "not_found");
    let info = status["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "google.rpc.ErrorInfo")
        .expect("an ErrorInfo detail");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(info["value"].as_str().unwrap().trim_end_matches('='))
        .unwrap();
    let info = <tonic_types::pb::ErrorInfo as prost::Message>::decode(bytes.as_slice()).unwrap();
    assert_eq!((info.domain.as_str(), info.reason.as_str()), ("partnership-metrics", "UNKNOWN_AGENCY"));

    // An IngestRecords stream whose first batch is rejected: buf curl resolves the
    // rejection's details through reflection, prints it, and goes on to the next batch.
    let workforce = |leavers: i64| {
        serde_json::json!({"workforceReturn": {
            "partnership": "pa", "agency": "nhs-a", "period": "2026Q3", "headcountStart": 100,
            "headcountEnd": 110, "joiners": 15, "leavers": leavers, "permanent": 90,
            "fixedTerm": 15, "agencyStaff": 5}})
    };
    let batches = [
        serde_json::json!({"requestId": "buf-0", "records": [workforce(-1)]}),
        serde_json::json!({"requestId": "buf-1", "records": [workforce(5)]}),
    ];
    let mut child = Command::new(&buf)
        .args(["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "@-"])
        .arg(format!("http://{}/partnership.v1.SubmissionService/IngestRecords", server.addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run buf curl");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        for batch in &batches {
            writeln!(stdin, "{batch}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "buf curl IngestRecords failed: {}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("one JSON answer per batch");
    assert_eq!(answers.len(), 2, "an answer for each batch: {answers:?}");
    let rejected = &answers[0]["rejected"];
    assert_eq!(answers[0]["requestId"], "buf-0");
    assert_eq!(rejected["code"], 3, "INVALID_ARGUMENT: {rejected}");
    let details = rejected["details"].as_array().unwrap();
    assert_eq!(details[0]["@type"], "type.googleapis.com/google.rpc.ErrorInfo", "{rejected}");
    assert_eq!(details[0]["reason"], "INVALID_RECORDS");
    assert_eq!(details[1]["@type"], "type.googleapis.com/google.rpc.BadRequest");
    assert_eq!(details[1]["fieldViolations"][0]["field"], "records[0].workforce_return.leavers");
    assert_eq!(answers[1]["requestId"], "buf-1");
    assert_eq!(answers[1]["accepted"]["insertedCount"], "1", "{}", answers[1]);

    assert!(server.terminate().success(), "the server exits cleanly on SIGTERM");
}

/// The Python scenarios against the binary on `url`'s database.
fn python_scenarios(python: PathBuf, server: Server) {
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/client.py"))
        .args(["--target", &server.addr, "--proto-dir", concat!(env!("CARGO_MANIFEST_DIR"), "/proto")])
        .args(["reflection", "registry", "records", "report"])
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.terminate().success());
}

#[test]
#[cfg_attr(not(pm_test_python), ignore = "PM_TEST_PYTHON is not set; scripts/test provides it")]
fn python_grpcio_client_drives_registry_submissions_and_reports_on_sqlite() {
    let python = tool("PM_TEST_PYTHON");
    // On the single-threaded runtime (`--worker-threads 1`), which the benchmarks use;
    // the other end-to-end tests run the default multi-threaded one.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e2e.db").display());
    python_scenarios(python, Server::start_on(&url, dir, &["--worker-threads", "1"]));
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(all(pm_test_python, pm_test_postgres)),
    ignore = "PM_TEST_PYTHON or PM_TEST_POSTGRES_URL is not set"
)]
async fn python_grpcio_client_drives_registry_submissions_and_reports_on_postgres() {
    let python = tool("PM_TEST_PYTHON");
    crate::helpers::require_postgres();
    let db = crate::helpers::TestDatabase::new(crate::helpers::Backend::Postgres).await;
    let server = Server::start_on(&db.url, tempfile::tempdir().unwrap(), &[]);
    tokio::task::spawn_blocking(move || python_scenarios(python, server)).await.unwrap();
    drop(db);
}

#[test]
fn demo_then_report_from_the_command_line() {
    let server = Server::start();
    let target = format!("http://{}", server.addr);
    let bin = env!("CARGO_BIN_EXE_partnership-metrics");
    let demo = Command::new(bin).args(["demo", "--target", &target]).output().expect("run demo");
    assert!(demo.status.success(), "demo failed: {}", String::from_utf8_lossy(&demo.stderr));
    assert!(String::from_utf8_lossy(&demo.stdout).contains("northvale"));

    let table = Command::new(bin)
        .args(["report", "--target", &target, "--partnership", "eastmoor", "--period", "2026Q3"])
        .output()
        .expect("run report");
    assert!(table.status.success(), "report failed: {}", String::from_utf8_lossy(&table.stderr));
    let text = String::from_utf8(table.stdout).unwrap();
    for needle in
        ["Partnership Sustainability Index", "D7 pooled resources", "leaver_rate_annualised", "Alerts:"]
    {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }

    let json = Command::new(bin)
        .args(["report", "--target", &target, "--partnership", "eastmoor", "--period", "2026Q3", "--json"])
        .args(["--weight", "D7=0", "--min-respondents", "3"])
        .output()
        .expect("run report --json");
    assert!(json.status.success(), "report --json failed: {}", String::from_utf8_lossy(&json.stderr));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("the report is JSON");
    assert_eq!(report["methodologyVersion"], "1");
    assert_eq!(report["partnership"], "eastmoor");
    assert_eq!(report["indicators"].as_array().unwrap().len(), 22);
    assert_eq!(report["minRespondents"], 3);
    assert_eq!(report["weights"][6]["domain"], "D7");
    assert!(report["composite"]["psi"].is_f64());

    let health = Command::new(bin).args(["health", "--target", &target]).output().expect("run health");
    assert!(health.status.success(), "health failed: {}", String::from_utf8_lossy(&health.stderr));
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "SERVING");

    let unknown = Command::new(bin)
        .args(["report", "--target", &target, "--partnership", "nowhere", "--period", "2026Q3"])
        .output()
        .expect("run report");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("partnership"));
    assert!(server.terminate().success());
    // Nobody listens any more: the health check fails.
    let down =
        Command::new(bin).args(["health", "--target", &target, "--timeout-secs", "2"]).output().unwrap();
    assert!(!down.status.success());
}

/// The README's "Secure it" walk-through with the real binary, configured through the
/// same environment variables as deploy/: development credentials, a server on all
/// interfaces with TLS and tokens, the demo loaded agency by agency, and a report
/// that equals the one a plain local server computes from the plain demo.
#[test]
fn the_secure_walkthrough_gives_the_same_reports_as_local_development() {
    let bin = env!("CARGO_BIN_EXE_partnership-metrics");
    let run = |args: &[&str], env: &[(&str, String)]| {
        let out =
            Command::new(bin).args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).output().unwrap();
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let creds = tempfile::tempdir().unwrap();
    let c = |name: &str| creds.path().join(name).display().to_string();
    run(&["dev-credentials", "--out", &c(""), "--server-name", "pm.cluster.internal"], &[]);
    let security = [
        ("PM_TLS_CERT", c("server.pem")),
        ("PM_TLS_KEY", c("server.key")),
        ("PM_JWT_JWKS", c("jwks.json")),
        ("PM_JWT_ISSUER", "https://dev-idp.partnership-metrics.local".to_string()),
        ("PM_JWT_AUDIENCE", "partnership-metrics".to_string()),
    ];

    // Without TLS and authentication, all interfaces are refused with the reason.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("open.db").display());
    let refused = Command::new(bin)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("without TLS") && why.contains("--insecure-allow-unauthenticated"), "{why}");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("secure.db").display());
    let secure = Server::start_with(&url, dir, "0.0.0.0:0", &[], &security);
    let port = secure.addr.rsplit(':').next().unwrap().to_string();
    let target = format!("https://localhost:{port}");
    let client = [("PM_TARGET", target.clone()), ("PM_CA_CERT", c("ca.pem"))];
    assert_eq!(run(&["health"], &client).trim(), "SERVING");
    // A container's health check has only the server's own settings (and the CA):
    // it finds the server on its listen port over TLS.
    let mut beside = security.to_vec();
    beside.extend([("PM_LISTEN", format!("0.0.0.0:{port}")), ("PM_CA_CERT", c("ca.pem"))]);
    assert_eq!(run(&["health"], &beside).trim(), "SERVING");
    // A certificate that names the Service, checked under that name on localhost.
    let named = |name: &str| {
        let env =
            [("PM_TARGET", target.clone()), ("PM_CA_CERT", c("ca.pem")), ("PM_TLS_SERVER_NAME", name.into())];
        Command::new(bin).arg("health").envs(env.iter().map(|(k, v)| (*k, v.as_str()))).output().unwrap()
    };
    assert!(named("pm.cluster.internal").status.success());
    let wrong = named("other.cluster.internal");
    assert!(!wrong.status.success(), "a name the certificate does not carry fails the check");
    run(&["demo", "--dev-credentials", &c("")], &client);
    let report_args = ["report", "--partnership", "eastmoor", "--period", "2026Q3", "--json"];
    let mut analyst = client.to_vec();
    analyst.push(("PM_TOKEN_FILE", c("tokens/registrar.jwt")));
    // A registrar may not read reports; an analyst may.
    let denied = Command::new(bin)
        .args(report_args)
        .envs(analyst.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(!denied.status.success());
    analyst.pop();
    analyst.push(("PM_TOKEN_FILE", c("tokens/analyst.jwt")));
    let secured_report = run(&report_args, &analyst);
    let verified = run(&["audit", "verify", "--database-url", &url], &[]);
    assert!(verified.starts_with("audit log intact"), "{verified}");
    assert!(secure.terminate().success());

    let plain = Server::start();
    let target = format!("http://{}", plain.addr);
    run(&["demo", "--target", &target], &[]);
    let plain_report = run(&report_args, &[("PM_TARGET", target)]);
    assert_eq!(secured_report, plain_report, "the same data gives the same report however it was loaded");
}
