//! Test harness: a real server on 127.0.0.1 port 0 with a fresh database, called
//! through the generated tonic clients.

use std::{collections::BTreeMap, time::Duration};

use partnership_metrics::{
    configuration::Settings,
    pb::{
        self, registry_service_client::RegistryServiceClient, report_service_client::ReportServiceClient,
        submission_service_client::SubmissionServiceClient,
    },
    startup::Application,
};
use sqlx::Row;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

pub struct TestApp {
    pub channel: Channel,
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
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

pub async fn spawn_app_with_grace(shutdown_grace: Duration) -> TestApp {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("test.db").display());
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: database_url.clone(),
        shutdown_grace,
    };
    let app = Application::build(settings).await.expect("application builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects to the test server");
    TestApp { channel, database_url, stop: Some(stop), server: Some(server), _dir: dir }
}

impl TestApp {
    pub fn registry(&self) -> RegistryServiceClient<Channel> {
        RegistryServiceClient::new(self.channel.clone())
    }

    pub fn submission(&self) -> SubmissionServiceClient<Channel> {
        SubmissionServiceClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub fn reports(&self) -> ReportServiceClient<Channel> {
        ReportServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
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
        let pool = sqlx::SqlitePool::connect(&self.database_url).await.expect("open test database");
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
