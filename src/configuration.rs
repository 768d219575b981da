//! Settings from flags and environment variables. Every setting is documented in
//! `partnership-metrics --help` and `partnership-metrics serve --help`.

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{auth::jwt::JwtSettings, domain::access::Role};

#[derive(Debug, Parser)]
#[command(
    name = "partnership-metrics",
    version,
    about = "Partnership-sustainability indicators for public-sector partnerships, over gRPC.",
    after_help = "Logging: RUST_LOG sets the filter (default `info`). Tracing: when \
                  OTEL_EXPORTER_OTLP_ENDPOINT is set (e.g. http://127.0.0.1:4317), spans are \
                  exported over OTLP/gRPC; the standard OTEL_* variables apply."
)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, env = "PM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(ServeArgs),
    /// Load a synthetic data set (agencies, partnerships of different fortunes, eight
    /// quarters of records) into a running server through its API.
    Demo(DemoArgs),
    /// Print a partnership's report for one period from a running server.
    Report(ReportArgs),
    /// Check a running server through the gRPC health protocol; exits 0 when SERVING.
    Health(HealthArgs),
    /// Write development credentials (CA, server certificate, JWKS, signing key,
    /// tokens, client certificates) for trying the secure mode locally.
    DevCredentials(DevCredentialsArgs),
    /// Mint an access token with a `dev-credentials` signing key.
    Token(TokenArgs),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Load agencies, partnerships, memberships and records from CSV or NDJSON files
    /// (docs/formats.md) into a running server through its API.
    Import(ImportArgs),
    /// Write every report of a period (ExportReports) as CSV, NDJSON, Parquet, a
    /// DHIS2 data value set or a FHIR R4 Bundle of MeasureReports.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A readable table.
    Table,
    /// The contract's JSON mapping.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    Csv,
    Ndjson,
}

impl From<InputFormat> for crate::cli::formats::Format {
    fn from(f: InputFormat) -> Self {
        match f {
            InputFormat::Csv => crate::cli::formats::Format::Csv,
            InputFormat::Ndjson => crate::cli::formats::Format::Ndjson,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// Files, or directories of files, named by what they hold (`agencies.csv`,
    /// `workforce_returns.csv`, `records.ndjson`, ...).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// The files' format [default: from each file's extension].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,

    /// Check everything and store nothing (validate_only).
    #[arg(long)]
    pub dry_run: bool,

    /// Records per IngestRecords batch (1 to 10000).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,

    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Long format, one row per partnership, period and item.
    Csv,
    /// One report per line in the contract's JSON mapping.
    Ndjson,
    /// The long format as typed Parquet columns.
    Parquet,
    /// A DHIS2 dataValueSet (needs --dhis2-mapping).
    Dhis2,
    /// A FHIR R4 Bundle of MeasureReports.
    Fhir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportTable {
    /// Indicators, domain scores and the PSI.
    Items,
    /// The alerts.
    Alerts,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// Period identifier: YYYY, YYYYQn, YYYYMM or YYYYApril.
    #[arg(long)]
    pub period: String,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,

    /// Which table csv and parquet write.
    #[arg(long, value_enum, default_value_t = ExportTable::Items)]
    pub table: ExportTable,

    /// Write here instead of standard output (parquet needs a file).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Fewest survey answers shown (default 5).
    #[arg(long)]
    pub min_respondents: Option<i32>,

    /// A domain weight, e.g. `--weight D4=2`; repeat for several.
    #[arg(long)]
    pub weight: Vec<String>,

    /// JSON mapping of item ids to DHIS2 data element uids and partnership ids to
    /// organisation unit uids (docs/formats.md).
    #[arg(long)]
    pub dhis2_mapping: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The service to ask about; empty for the whole server.
    #[arg(long, default_value = "")]
    pub service: String,

    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,

    /// Without --target: the server's own listen address, so a container's health
    /// check follows the server's settings (its port, on localhost).
    #[arg(long, env = "PM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,

    /// Without --target: the server's certificate; when set the check uses TLS
    /// (trusting --ca-cert).
    #[arg(long, env = "PM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// Partnership id.
    #[arg(long)]
    pub partnership: String,

    /// Period identifier: YYYY, YYYYQn, YYYYMM or YYYYApril.
    #[arg(long)]
    pub period: String,

    /// Fewest survey answers shown (default 5).
    #[arg(long)]
    pub min_respondents: Option<i32>,

    /// A domain weight, e.g. `--weight D4=2`; repeat for several.
    #[arg(long)]
    pub weight: Vec<String>,

    /// Print the report as protobuf JSON instead of a table (the same as
    /// `--format json`).
    #[arg(long)]
    pub json: bool,

    /// How to print the report.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// Load about this many records (more partnerships) instead of the five-partnership
    /// demo.
    #[arg(long)]
    pub records: Option<usize>,

    /// Records per streamed batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,

    /// A `dev-credentials` directory: register with its registrar token and submit
    /// each agency's records with a submitter token minted for that agency (the
    /// secure mode, locally). Without it every call uses --token, if any.
    #[arg(long)]
    pub dev_credentials: Option<PathBuf>,
}

/// How a client command reaches the server and who it says it is.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientArgs {
    /// The server: `http://host:port`, or `https://host:port` for TLS
    /// [default: http://127.0.0.1:50051].
    #[arg(long, env = "PM_TARGET")]
    pub target: Option<String>,

    /// The name the server's certificate must carry, when it is not the target's
    /// host (e.g. a health check on localhost of a server whose certificate names
    /// its Service).
    #[arg(long, env = "PM_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,

    /// An OAuth2 access token, sent as `authorization: Bearer <token>`.
    #[arg(long, env = "PM_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,

    /// A file holding the access token (e.g. one written by `dev-credentials`).
    #[arg(long, env = "PM_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The CA certificate (PEM) that signed the server's certificate; implies TLS.
    #[arg(long, env = "PM_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// A client certificate (PEM) for mutual TLS; needs --client-key.
    #[arg(long, env = "PM_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "PM_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DevCredentialsArgs {
    /// Directory to write into (created if needed).
    #[arg(long)]
    pub out: PathBuf,

    /// Also write submitter and reader tokens and a client certificate for this
    /// agency; repeat for several.
    #[arg(long = "agency")]
    pub agencies: Vec<String>,

    /// A DNS name the server certificate carries besides localhost (e.g. the
    /// Service name in a cluster); repeat for several.
    #[arg(long = "server-name")]
    pub server_names: Vec<String>,

    /// Hours the written tokens stay valid.
    #[arg(long, default_value_t = 24)]
    pub ttl_hours: u64,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The `dev-credentials` directory whose signing key signs the token.
    #[arg(long)]
    pub credentials: PathBuf,

    /// The token's `sub`; default `dev-<agency or role>`.
    #[arg(long)]
    pub sub: Option<String>,

    /// The agency the caller acts for (`agency_id`).
    #[arg(long)]
    pub agency: Option<String>,

    /// A role; repeat for several.
    #[arg(long = "role", required = true)]
    pub roles: Vec<Role>,

    /// Minutes the token stays valid.
    #[arg(long, default_value_t = 60)]
    pub ttl_minutes: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chain; exits non-zero naming the first entry
    /// that is missing or altered.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AuditVerifyArgs {
    /// The database to check, as for `serve`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://partnership-metrics.db")]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on: `host:port`, the host an IP address or a name
    /// (`localhost:50051`, `[::1]:50051`).
    #[arg(long, env = "PM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,

    /// Database: `sqlite://path` (or a bare path) for the embedded SQLite default,
    /// created and migrated on first start; `postgres://user:password@host:port/db`
    /// for PostgreSQL, migrated on start (replicas starting together wait for each
    /// other).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://partnership-metrics.db")]
    pub database_url: String,

    /// Seconds in-flight calls get to finish after SIGINT/SIGTERM before the server
    /// exits anyway.
    #[arg(long, env = "PM_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Seconds to keep trying to reach PostgreSQL at start-up (containers start in
    /// any order); each failed attempt is logged with its cause. 0: try once.
    #[arg(long, env = "PM_DATABASE_WAIT_SECS", default_value_t = 30)]
    pub database_wait_secs: u64,

    /// Memory for computed reports, in MiB; a cached report is served until its
    /// partnership's data changes. 0 turns the cache off.
    #[arg(long, env = "PM_REPORT_CACHE_MIB", default_value_t = 64)]
    pub report_cache_mib: usize,

    /// Threads that run the server; default one per core. With 1 the server runs on a
    /// single-threaded runtime, which writes several responses per system call: on
    /// small machines that share their cores with a proxy or a load generator it
    /// serves more requests, with lower tail latency (see BENCHMARKS.md). The price:
    /// reports computed on a cache miss (an export's chunk of 100, say) hold up the
    /// other calls while they compute.
    #[arg(long, env = "PM_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,

    #[command(flatten)]
    pub security: SecurityArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What the server admits at once. The defaults suit a 2-core machine: see
/// BENCHMARKS.md (overload) for how they were sized.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Unary calls in progress at once (health checks aside); beyond it calls are
    /// answered at once with RESOURCE_EXHAUSTED and a RetryInfo. Two cores answer
    /// report reads fastest from about 16 calls at once; more only queue.
    #[arg(long, env = "PM_MAX_IN_FLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Streaming calls (IngestRecords, ExportReports) open at once; beyond it, as for
    /// --max-in-flight.
    #[arg(long, env = "PM_MAX_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// Concurrent streams a client may open on one connection (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, env = "PM_MAX_STREAMS_PER_CONNECTION", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,

    /// Open connections at once; one more is closed as soon as it is accepted.
    #[arg(long, env = "PM_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// MiB of request messages being received at once, all calls together.
    #[arg(long, env = "PM_REQUEST_MEMORY_MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub request_memory_mib: u32,

    /// Seconds a connection with no call in progress stays open.
    #[arg(long, env = "PM_IDLE_TIMEOUT_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,

    /// Seconds a new connection has to start talking (first bytes; the TLS
    /// handshake too).
    #[arg(long, env = "PM_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout_secs: u64,

    /// Seconds between HTTP/2 keepalive pings on a connection; a ping unanswered for
    /// 20 s closes it.
    #[arg(long, env = "PM_KEEPALIVE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_secs: u64,
}

/// See [`LimitArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_in_flight: usize,
    pub max_streams: usize,
    pub max_streams_per_connection: u32,
    pub max_connections: usize,
    pub request_memory_bytes: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub keepalive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 64,
            max_streams: 128,
            max_streams_per_connection: 100,
            max_connections: 1024,
            request_memory_bytes: 256 << 20,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
        }
    }
}

impl From<LimitArgs> for Limits {
    fn from(a: LimitArgs) -> Limits {
        Limits {
            max_in_flight: a.max_in_flight as usize,
            max_streams: a.max_streams as usize,
            max_streams_per_connection: a.max_streams_per_connection,
            max_connections: a.max_connections as usize,
            request_memory_bytes: (a.request_memory_mib as usize) << 20,
            idle_timeout: Duration::from_secs(a.idle_timeout_secs),
            handshake_timeout: Duration::from_secs(a.handshake_timeout_secs),
            keepalive: Duration::from_secs(a.keepalive_secs),
        }
    }
}

/// Transport security and authentication. Without any authentication configured the
/// server is in local-development mode: every caller may do everything, and it binds
/// loopback addresses only.
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// Serve TLS (1.2 or 1.3) with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "PM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "PM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by these CAs (PEM bundle): mutual TLS. A
    /// certificate's URI SAN spiffe://<trust domain>/agency/<agency id> names the
    /// caller's agency. Needs --tls-cert.
    #[arg(long, env = "PM_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Accept OAuth2 access tokens (JWT, RS256/ES256/EdDSA) signed by the keys of
    /// this JWKS file; re-read when it changes. Needs --jwt-issuer and --jwt-audience.
    #[arg(long, env = "PM_JWT_JWKS", requires_all = ["jwt_issuer", "jwt_audience"])]
    pub jwt_jwks: Option<PathBuf>,

    /// The `iss` every token must carry.
    #[arg(long, env = "PM_JWT_ISSUER", requires = "jwt_jwks")]
    pub jwt_issuer: Option<String>,

    /// The `aud` every token must carry.
    #[arg(long, env = "PM_JWT_AUDIENCE", requires = "jwt_jwks")]
    pub jwt_audience: Option<String>,

    /// Roles of callers authenticated by a client certificate.
    #[arg(long, env = "PM_MTLS_ROLES", value_delimiter = ',', default_value = "submitter,reader")]
    pub mtls_roles: Vec<Role>,

    /// Who may use server reflection: `public`, or `authenticated` callers only.
    /// Default: public without authentication, authenticated with it.
    #[arg(long, env = "PM_REFLECTION", value_enum)]
    pub reflection: Option<ReflectionAccess>,

    /// Allow binding a non-loopback address without TLS and authentication. Never
    /// in production; logged at WARN on every start.
    #[arg(long, env = "PM_INSECURE_ALLOW_UNAUTHENTICATED")]
    pub insecure_allow_unauthenticated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReflectionAccess {
    /// Anyone may list and describe the services.
    Public,
    /// Only callers who authenticate.
    Authenticated,
}

/// TLS material, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Present for mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// How the server secures itself; see [`SecurityArgs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub tls: Option<TlsFiles>,
    pub jwt: Option<JwtSettings>,
    pub mtls_roles: BTreeSet<Role>,
    pub reflection: Option<ReflectionAccess>,
    pub insecure_allow_unauthenticated: bool,
}

impl Default for Security {
    /// Local development: no TLS, no authentication.
    fn default() -> Self {
        Security {
            tls: None,
            jwt: None,
            mtls_roles: [Role::Submitter, Role::Reader].into(),
            reflection: None,
            insecure_allow_unauthenticated: false,
        }
    }
}

impl From<SecurityArgs> for Security {
    fn from(a: SecurityArgs) -> Security {
        let tls = match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca: a.tls_client_ca }),
            _ => None,
        };
        let jwt = match (a.jwt_jwks, a.jwt_issuer, a.jwt_audience) {
            (Some(jwks), Some(issuer), Some(audience)) => Some(JwtSettings { jwks, issuer, audience }),
            _ => None,
        };
        Security {
            tls,
            jwt,
            mtls_roles: a.mtls_roles.into_iter().collect(),
            reflection: a.reflection,
            insecure_allow_unauthenticated: a.insecure_allow_unauthenticated,
        }
    }
}

impl Security {
    /// Whether callers must authenticate.
    pub fn authenticates(&self) -> bool {
        self.jwt.is_some() || self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }

    pub fn reflection_public(&self) -> bool {
        self.reflection.unwrap_or(if self.authenticates() {
            ReflectionAccess::Authenticated
        } else {
            ReflectionAccess::Public
        }) == ReflectionAccess::Public
    }

    /// Refuses a configuration that would expose the service: a non-loopback address
    /// needs TLS and an authentication method (unless explicitly overridden).
    pub fn check_exposure(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if listen.ip().is_loopback() || self.insecure_allow_unauthenticated {
            return Ok(());
        }
        let mut missing = Vec::new();
        if self.tls.is_none() {
            missing.push("TLS (--tls-cert and --tls-key)");
        }
        if !self.authenticates() {
            missing.push(
                "authentication (--jwt-jwks with --jwt-issuer and --jwt-audience, and/or --tls-client-ca)",
            );
        }
        if missing.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "refusing to listen on {listen}, which is not a loopback address, without {}. Without them the \
             server only binds loopback addresses (local development). Configure them, or pass \
             --insecure-allow-unauthenticated to accept the risk.",
            missing.join(" and ")
        )
    }
}

/// What the server needs to start; built from [`ServeArgs`] or directly by tests.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port`, resolved when the server starts.
    pub listen: String,
    pub database_url: String,
    /// How long to keep trying to reach the database at start-up.
    pub database_wait: Duration,
    pub shutdown_grace: Duration,
    pub report_cache_mib: usize,
    pub security: Security,
    pub limits: Limits,
}

impl Settings {
    /// The defaults of `serve` for this address and database (local development).
    pub fn new(listen: impl Into<String>, database_url: impl Into<String>) -> Settings {
        Settings {
            listen: listen.into(),
            database_url: database_url.into(),
            database_wait: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            report_cache_mib: 64,
            security: Security::default(),
            limits: Limits::default(),
        }
    }
}

impl From<ServeArgs> for Settings {
    fn from(a: ServeArgs) -> Settings {
        Settings {
            listen: a.listen,
            database_url: a.database_url,
            database_wait: Duration::from_secs(a.database_wait_secs),
            shutdown_grace: Duration::from_secs(a.shutdown_grace_secs),
            report_cache_mib: a.report_cache_mib,
            security: a.security.into(),
            limits: a.limits.into(),
        }
    }
}

/// A database URL fit to print: whatever its shape, no password. The userinfo's
/// password (up to the last `@` of the authority, as passwords may hold `@`), any
/// `password=`-like query or keyword value, and for a string without a scheme
/// everything before its last `@`, become `***`.
pub fn redact_url(url: &str) -> String {
    let redacted = match url.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first '/' after the last '@' (a password may
            // hold '/' too, so the '@' is found first).
            let (authority_end, _) = rest
                .char_indices()
                .skip(rest.rfind('@').map_or(0, |at| at + 1))
                .find(|(_, c)| *c == '/' || *c == '?')
                .unwrap_or((rest.len(), ' '));
            let (authority, tail) = rest.split_at(authority_end);
            let authority = match authority.rsplit_once('@') {
                // A user without a password stays as it is: `***` would suggest one.
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{tail}")
        }
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        },
    };
    redact_secret_values(&redacted)
}

/// `password=...` (and its spellings) in a query string or keyword list, as `***`.
fn redact_secret_values(s: &str) -> String {
    const KEYS: [&str; 4] = ["password=", "passwd=", "pwd=", "sslpassword="];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some((at, key)) =
        KEYS.iter().filter_map(|k| rest.to_ascii_lowercase().find(k).map(|i| (i, *k))).min_by_key(|(i, _)| *i)
    {
        let value_start = at + key.len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value_len = rest[value_start..].find(['&', ' ', ';']).unwrap_or(rest.len() - value_start);
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(redact_url("postgres://pm:s3cret@db:5432/pm"), "postgres://pm:***@db:5432/pm");
        assert_eq!(redact_url("sqlite://data/pm.db"), "sqlite://data/pm.db");
        assert_eq!(redact_url("postgres://postgres@db/test"), "postgres://postgres@db/test");
        assert_eq!(redact_url("postgres://pm:p@ss@db/pm"), "postgres://pm:***@db/pm");
        assert_eq!(redact_url("postgres://pm:a/b@c@db/pm?x=1"), "postgres://pm:***@db/pm?x=1");
        assert_eq!(redact_url("postgress://pm:S3cret@db/pm"), "postgress://pm:***@db/pm");
        assert_eq!(
            redact_url("postgres://db/pm?sslmode=require&password=S3cret&user=pm"),
            "postgres://db/pm?sslmode=require&password=***&user=pm"
        );
        assert_eq!(redact_url("host=db PASSWORD=S3cret user=pm"), "host=db PASSWORD=*** user=pm");
        assert_eq!(redact_url("pm:S3cret@db/pm"), "***@db/pm");
        for url in [
            "postgres://pm:S3cret@db/pm",
            "postgresql://pm:S3cret@db:5432/pm?sslmode=disable",
            "postgres://pm:S3c@ret@db/pm",
            "postgres://pm:S3cret@",
            "://pm:S3cret@db",
            "postgres://db/pm?password=S3cret",
            "mysql://pm:S3cret@db/pm",
        ] {
            assert!(!redact_url(url).contains("S3cret"), "{url} -> {}", redact_url(url));
        }
    }

    #[test]
    fn cli_parses_flags() {
        let cli = Cli::try_parse_from([
            "partnership-metrics",
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "sqlite://x.db",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.listen, "127.0.0.1:0");
        assert_eq!(args.database_url, "sqlite://x.db");
        assert_eq!(args.worker_threads, None, "the runtime's own default unless asked");
    }

    #[test]
    fn worker_threads_must_be_at_least_one() {
        let serve = |n: &str| Cli::try_parse_from(["partnership-metrics", "serve", "--worker-threads", n]);
        let Command::Serve(args) = serve("1").unwrap().command else { panic!("not serve") };
        assert_eq!(args.worker_threads, Some(1));
        for bad in ["0", "-1", "many"] {
            assert!(serve(bad).is_err(), "--worker-threads {bad} was accepted");
        }
    }
}
