//! The running server: opens the store, binds the listener, serves every service with
//! health and reflection, and shuts down gracefully.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::{
    auth::{Authenticator, jwt::JwtVerifier},
    configuration::{Limits, Settings, TlsFiles, redact_url},
    domain::{Timestamp, idempotency::REQUEST_ID_RETENTION},
    grpc::{
        connections::{ConnectionLimits, ManagedIncoming},
        edge::{EdgeLayer, EdgeLimits},
        layers::{IdentityLayer, RpcTraceLayer},
        registry::RegistryApi,
        reports::{ReportApi, ReportRoutes},
        submission::{SubmissionApi, SubmissionRoutes},
    },
    pb::{self, registry_service_server::RegistryServiceServer},
    storage::{self, Store},
};

/// Largest SubmitRecords or IngestRecords message accepted: above the largest valid
/// batch (10,000 records with every text field at its longest, about 45 MiB; a
/// test checks it), and a bound on what one message makes the server hold.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest message of every other method (the largest valid one is a few KiB).
pub const MAX_OTHER_MESSAGE_BYTES: usize = 1024 * 1024;

/// How long a shed caller is told to wait (RetryInfo).
const RETRY_AFTER: Duration = std::time::Duration::from_millis(100);

/// How long an HTTP/2 keepalive ping may go unanswered before the connection closes.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The fully qualified names of the services reported through the health service.
pub const SERVICE_NAMES: [&str; 3] =
    ["partnership.v1.RegistryService", "partnership.v1.SubmissionService", "partnership.v1.ReportService"];

/// A started but not yet serving application; `local_addr` is known once built, so
/// tests bind port 0 and read the port back.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Arc<dyn Store>,
    shutdown_grace: Duration,
    report_cache_bytes: usize,
    tls: Option<ServerTlsConfig>,
    auth: Arc<Authenticator>,
    jwt: Option<Arc<JwtVerifier>>,
    reflection_public: bool,
    limits: Limits,
}

/// The address `host:port` names: an IP address as it is, a name through the
/// resolver (its first address).
async fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(listen)
        .await
        .with_context(|| {
            format!("--listen {listen}: expected host:port, such as 127.0.0.1:50051 or localhost:50051")
        })?
        .next()
        .with_context(|| format!("--listen {listen}: the name resolves to no address"))
}

/// Reads a PEM file named by a setting.
fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// The server's TLS configuration from its files: identity, and for mutual TLS the
/// CAs client certificates must chain to (a client certificate is then required).
fn tls_config(files: &TlsFiles) -> anyhow::Result<ServerTlsConfig> {
    let identity =
        Identity::from_pem(read_pem(&files.cert, "TLS certificate")?, read_pem(&files.key, "TLS key")?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        config = config
            .client_ca_root(Certificate::from_pem(read_pem(ca, "client CA bundle")?))
            .client_auth_optional(false);
    }
    Ok(config)
}

impl Application {
    /// Checks the security settings, opens and migrates the database, then binds the
    /// listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let security = &settings.security;
        let listen = resolve(&settings.listen).await?;
        security.check_exposure(listen)?;
        if security.insecure_allow_unauthenticated {
            warn!(
                "--insecure-allow-unauthenticated is set: the server may listen beyond loopback without TLS \
                 or authentication"
            );
        }
        let tls = security.tls.as_ref().map(tls_config).transpose()?;
        let jwt = security.jwt.clone().map(JwtVerifier::new).transpose()?.map(Arc::new);
        let mtls_roles =
            security.tls.as_ref().and_then(|t| t.client_ca.as_ref()).map(|_| security.mtls_roles.clone());
        let auth = Arc::new(Authenticator::new(jwt.clone(), mtls_roles));
        if !auth.is_enabled() {
            info!("no authentication configured: local-development mode, every caller may do everything");
        }
        // The port first: a server that cannot listen creates no database.
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {} ({listen})", settings.listen))?;
        let local_addr = listener.local_addr()?;
        let store = storage::open_waiting(&settings.database_url, settings.database_wait)
            .await
            .with_context(|| format!("opening the database {}", redact_url(&settings.database_url)))?;
        crate::telemetry::metrics::metrics().observe_pool(Arc::new(storage::ObservedPool(store.clone())));
        Ok(Application {
            listener,
            local_addr,
            store,
            shutdown_grace: settings.shutdown_grace,
            report_cache_bytes: settings.report_cache_mib << 20,
            tls,
            auth,
            jwt,
            reflection_public: settings.security.reflection_public(),
            limits: settings.limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Serves until `shutdown` completes, then: health NOT_SERVING, no new calls,
    /// in-flight calls get the grace period to finish, the database is closed.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Application {
            listener,
            local_addr,
            store,
            shutdown_grace,
            report_cache_bytes,
            tls,
            auth,
            jwt,
            reflection_public,
            limits,
        } = self;
        // Keys rotate without a restart: the JWKS file is watched while serving.
        let jwks_watch = jwt.as_ref().map(JwtVerifier::watch);
        let (health, health_service) = tonic_health::server::health_reporter();
        // Each reflection version also lists the other, since both are served.
        // The error details too (google.rpc.ErrorInfo, BadRequest, RetryInfo, ...), so
        // that generic clients can decode the details of a failed call.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service (v1)")?;
        let reflection_v1alpha = reflection()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building the reflection service (v1alpha)")?;

        // Batch creates may be large; the edge layer holds every other method to 1 MiB.
        let registry = RegistryServiceServer::new(RegistryApi::new(store.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        // Streams watch this to stop taking batches when shutdown begins.
        let (draining_tx, draining) = tokio::sync::watch::channel(false);
        let submission = SubmissionRoutes::new(SubmissionApi::new(store.clone(), draining));
        let reports = ReportRoutes::new(ReportApi::new(store.clone(), report_cache_bytes));

        // The database is open and migrated by now (Application::build), so every
        // service can report SERVING from the first call.
        set_health(&health, ServingStatus::Serving).await;

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let tls_on = tls.is_some();
        let mut builder = Server::builder()
            .max_concurrent_streams(Some(limits.max_streams_per_connection))
            .http2_keepalive_interval(Some(limits.keepalive))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
        if let Some(tls) = tls {
            builder = builder.tls_config(tls.timeout(limits.handshake_timeout)).context("configuring TLS")?;
        }
        let edge = EdgeLimits {
            max_in_flight: limits.max_in_flight,
            max_streams: limits.max_streams,
            max_batch_message_bytes: MAX_MESSAGE_BYTES,
            max_message_bytes: MAX_OTHER_MESSAGE_BYTES,
            request_memory_bytes: limits.request_memory_bytes,
            retry_after: RETRY_AFTER,
        };
        // Outermost first: every answer is traced; load is shed before any
        // authentication work; a call is authenticated before it is read.
        let router = builder
            .layer(RpcTraceLayer)
            .layer(EdgeLayer::new(edge))
            .layer(IdentityLayer::new(auth, reflection_public))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(registry)
            .add_service(submission)
            .add_service(reports);
        let incoming = ManagedIncoming::new(
            listener,
            ConnectionLimits {
                max_connections: limits.max_connections,
                handshake_timeout: limits.handshake_timeout,
                idle_timeout: limits.idle_timeout,
            },
        );
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        }));
        let purge = tokio::spawn(purge_request_log(store.clone()));
        info!(%local_addr, backend = store.backend(), tls = tls_on, "serving");

        tokio::select! {
            result = &mut server => {
                purge.abort();
                if let Some(w) = &jwks_watch {
                    w.abort();
                }
                store.close().await;
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow::Error::new(e).context("the gRPC server failed")),
                    Err(e) => Err(anyhow::Error::new(e).context("the gRPC server task failed")),
                };
            }
            () = shutdown => {}
        }

        info!(grace_secs = shutdown_grace.as_secs_f64(), "shutting down: draining in-flight calls");
        set_health(&health, ServingStatus::NotServing).await;
        let _ = draining_tx.send(true);
        let _ = stop_tx.send(());
        match tokio::time::timeout(shutdown_grace, &mut server).await {
            Ok(Ok(Ok(()))) => info!("all calls finished"),
            Ok(Ok(Err(e))) => warn!(error = %e, "the gRPC server failed while draining"),
            Ok(Err(e)) => warn!(error = %e, "the gRPC server task failed while draining"),
            Err(_) => {
                warn!("calls still running after the grace period; closing them");
                server.abort();
            }
        }
        purge.abort();
        if let Some(w) = &jwks_watch {
            w.abort();
        }
        store.close().await;
        info!("stopped");
        Ok(())
    }
}

async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Forgets request ids past their retention, hourly.
async fn purge_request_log(store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = Timestamp(Timestamp::now().0 - REQUEST_ID_RETENTION.as_micros() as i64);
        match store.purge_request_log(cutoff).await {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "purged expired request ids"),
            Err(e) => warn!(error = %e, "purging expired request ids failed; will retry"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}
