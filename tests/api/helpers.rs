//! Test harness: a real server on 127.0.0.1 port 0 with a fresh database, called
//! through the generated tonic clients.

use std::{collections::BTreeMap, time::Duration};

use partnership_metrics::{
    cli::client::{ApiChannel, Credentials},
    configuration::Settings,
    pb::{
        self, registry_service_client::RegistryServiceClient, report_service_client::ReportServiceClient,
        submission_service_client::SubmissionServiceClient,
    },
    startup::Application,
};
use sqlx::Row;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};
use tonic_types::StatusExt;

/// The storage backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// Set by `backend_test!` for the test body; `spawn_app` reads it.
    pub static BACKEND: Backend;
}

/// The PostgreSQL server for the PostgreSQL half of the suite, as an admin URL
/// (`postgres://user@host:port/db`), from `PM_TEST_POSTGRES_URL`.
pub fn postgres_url() -> Option<String> {
    std::env::var("PM_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// The admin URL of the PostgreSQL server, for a test that is not ignored: built with
/// `PM_TEST_POSTGRES_URL` set (cfg `pm_test_postgres`), it must be set at run time too.
pub fn require_postgres() -> String {
    postgres_url().expect("PM_TEST_POSTGRES_URL was set when the tests were built but is not set now")
}

/// Defines a test once per backend: `name::sqlite` and `name::postgres`. The
/// PostgreSQL one is ignored (reported as such) when the tests were built without
/// `PM_TEST_POSTGRES_URL`.
#[macro_export]
macro_rules! backend_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            #[tokio::test]
            async fn sqlite() {
                $crate::helpers::BACKEND.scope($crate::helpers::Backend::Sqlite, async $body).await
            }

            $(#[$meta])*
            #[tokio::test]
            #[cfg_attr(not(pm_test_postgres), ignore = "PM_TEST_POSTGRES_URL is not set")]
            async fn postgres() {
                $crate::helpers::require_postgres();
                $crate::helpers::BACKEND.scope($crate::helpers::Backend::Postgres, async $body).await
            }
        }
    };
}

/// A database of its own for one test: a SQLite file in a temporary directory, or a
/// PostgreSQL database created now and dropped with the test.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    postgres_name: Option<String>,
    _dir: tempfile::TempDir,
}

static DATABASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl TestDatabase {
    pub async fn new(backend: Backend) -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDatabase {
                url: format!("sqlite://{}", dir.path().join("test.db").display()),
                backend,
                postgres_name: None,
                _dir: dir,
            },
            Backend::Postgres => {
                let admin = postgres_url().expect("PM_TEST_POSTGRES_URL");
                let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos();
                let name = format!("pm_test_{}_{n}_{nanos}", std::process::id());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create a test database");
                TestDatabase {
                    url: with_database(&admin, &name),
                    backend,
                    postgres_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }
}

/// The admin URL with its database replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let server = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => server,
        _ => base.trim_end_matches('/'),
    };
    format!("{server}/{name}{query}")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (Some(name), Some(admin)) = (self.postgres_name.take(), postgres_url()) else { return };
        // Drop runs inside the test's runtime; a thread with its own runtime does the
        // async cleanup. FORCE ends the server's connections still open.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        });
        let _ = done.join();
    }
}

pub struct TestApp {
    pub channel: Channel,
    pub db: TestDatabase,
    pub addr: std::net::SocketAddr,
    /// What `api()`, `registry()`, `submission()` and `reports()` send: none by
    /// default; a test of a secured server sets a token here for its setup calls.
    pub credentials: Credentials,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

static TRACING: std::sync::Once = std::sync::Once::new();

/// Logs of the server under test go to the test's captured output when
/// `TEST_LOG` is set.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
        }
    });
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_grace(Duration::from_secs(5)).await
}

/// The backend of the running `backend_test!`, SQLite outside one.
pub fn current_backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

pub async fn spawn_app_with_grace(shutdown_grace: Duration) -> TestApp {
    spawn_app_on(current_backend(), shutdown_grace).await
}

pub async fn spawn_app_on(backend: Backend, shutdown_grace: Duration) -> TestApp {
    spawn_app_configured(backend, |s| s.shutdown_grace = shutdown_grace).await
}

/// A server on `backend` with the test defaults, then `configure` applied (TLS,
/// authentication, ...). The channel is plaintext unless the settings serve TLS, in
/// which case `TestApp::channel` is unusable and tests connect themselves.
pub async fn spawn_app_configured(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    init_tracing();
    let db = TestDatabase::new(backend).await;
    let mut settings = Settings::new("127.0.0.1:0", db.url.clone());
    settings.shutdown_grace = Duration::from_secs(5);
    settings.report_cache_mib = 16;
    configure(&mut settings);
    let app = Application::build(settings).await.expect("application builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    // Lazy: a TLS server refuses a plaintext connection, and tests that need TLS
    // make their own.
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    TestApp { channel, db, addr, credentials: Credentials::none(), stop: Some(stop), server: Some(server) }
}

impl TestApp {
    /// The channel with no credentials, as a client command would make it.
    pub fn api(&self) -> ApiChannel {
        InterceptedService::new(self.channel.clone(), self.credentials.clone())
    }

    /// The channel with no credentials at all, whatever `credentials` says.
    pub fn channel_with_no_token(&self) -> ApiChannel {
        InterceptedService::new(self.channel.clone(), Credentials::none())
    }

    /// The channel with a bearer token on every call.
    pub fn with_token(&self, token: &str) -> ApiChannel {
        InterceptedService::new(
            self.channel.clone(),
            Credentials::bearer(token).expect("a header-safe token"),
        )
    }

    pub fn registry(&self) -> RegistryServiceClient<ApiChannel> {
        RegistryServiceClient::new(self.api())
    }

    pub fn submission(&self) -> SubmissionServiceClient<ApiChannel> {
        SubmissionServiceClient::new(self.api())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub fn reports(&self) -> ReportServiceClient<ApiChannel> {
        ReportServiceClient::new(self.api()).max_decoding_message_size(64 << 20)
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Every table's rows, as text, for "nothing changed" assertions.
    pub async fn snapshot(&self) -> BTreeMap<String, Vec<String>> {
        match self.db.backend {
            Backend::Sqlite => sqlite_snapshot(&self.db.url).await,
            Backend::Postgres => postgres_snapshot(&self.db.url).await,
        }
    }

    pub async fn create_agency(&self, id: &str) -> pb::Agency {
        self.registry()
            .create_agency(pb::CreateAgencyRequest {
                agency_id: id.into(),
                agency: Some(pb::Agency {
                    display_name: format!("Agency {id}"),
                    sector: pb::Sector::NhsBody as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create agency")
            .into_inner()
    }

    pub async fn create_partnership(&self, id: &str) -> pb::Partnership {
        self.registry()
            .create_partnership(pb::CreatePartnershipRequest {
                partnership_id: id.into(),
                partnership: Some(pb::Partnership {
                    display_name: format!("Partnership {id}"),
                    purpose: "Joined-up care".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create partnership")
            .into_inner()
    }

    pub async fn create_membership(
        &self,
        partnership: &str,
        agency: &str,
        role: pb::Role,
        start: &str,
        end: &str,
    ) -> pb::Membership {
        self.registry()
            .create_membership(pb::CreateMembershipRequest {
                parent: format!("partnerships/{partnership}"),
                membership: Some(pb::Membership {
                    agency: agency.into(),
                    role: role as i32,
                    start_date: start.into(),
                    end_date: end.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create membership")
            .into_inner()
    }
}

async fn sqlite_snapshot(url: &str) -> BTreeMap<String, Vec<String>> {
    let pool = sqlx::SqlitePool::connect(url).await.expect("open test database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
         AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    let mut out = BTreeMap::new();
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table} ORDER BY 1, 2")))
            .fetch_all(&pool)
            .await
            .expect("read table");
        let rendered = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .map(|v| format!("{v:?}"))
                            .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                            .or_else(|_| row.try_get::<Option<Vec<u8>>, _>(i).map(|v| format!("{v:?}")))
                            .unwrap_or_else(|_| "?".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        out.insert(table, rendered);
    }
    pool.close().await;
    out
}

async fn postgres_snapshot(url: &str) -> BTreeMap<String, Vec<String>> {
    let pool = sqlx::PgPool::connect(url).await.expect("open test database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    let mut out = BTreeMap::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"
        )))
        .fetch_all(&pool)
        .await
        .expect("read table");
        out.insert(table, rows);
    }
    pool.close().await;
    out
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts a status's code, its `ErrorInfo` reason and domain, and the exact list of
/// `BadRequest` field paths (empty when none is expected).
pub fn assert_error(status: &Status, code: Code, reason: &str, fields: &[&str]) {
    assert_eq!(status.code(), code, "code of {status:?}");
    let details = status.get_error_details();
    let info = details.error_info().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "reason of {status:?}");
    assert_eq!(info.domain, "partnership-metrics");
    let got: Vec<&str> = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(got, fields, "BadRequest fields of {status:?}");
}

/// A client codec that sends and receives message bytes as they are: for requests no
/// well-behaved encoder would make.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

#[derive(Debug, Default)]
pub struct RawCoder;

impl tonic::codec::Encoder for RawCoder {
    type Item = bytes::Bytes;
    type Error = Status;

    fn encode(&mut self, item: bytes::Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCoder {
    type Item = bytes::Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<bytes::Bytes>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCoder;
    type Decoder = RawCoder;

    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }

    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

/// A unary call with `body` as the request message's bytes.
pub async fn raw_unary(
    channel: ApiChannel,
    path: &'static str,
    body: bytes::Bytes,
) -> Result<bytes::Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(64 << 20);
    grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    Ok(grpc.unary(tonic::Request::new(body), path, RawCodec).await?.into_inner())
}

/// A client stream of raw messages; returns the answers as they arrive, then the
/// status that ended the stream.
pub async fn raw_stream(
    channel: ApiChannel,
    path: &'static str,
    bodies: Vec<bytes::Bytes>,
) -> (Vec<bytes::Bytes>, Status) {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(64 << 20);
    if let Err(e) = grpc.ready().await {
        return (Vec::new(), Status::unknown(e.to_string()));
    }
    let path = http::uri::PathAndQuery::from_static(path);
    let mut stream =
        match grpc.streaming(tonic::Request::new(tokio_stream::iter(bodies)), path, RawCodec).await {
            Ok(r) => r.into_inner(),
            Err(status) => return (Vec::new(), status),
        };
    let mut answers = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => answers.push(m),
            Ok(None) => return (answers, Status::ok("")),
            Err(status) => return (answers, status),
        }
    }
}
