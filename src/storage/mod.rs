//! Storage: one interface, [`Store`], over domain types, with an implementation per
//! backend. Nothing above this module sees SQL; nothing in it sees protobuf.

use std::{
    collections::HashSet,
    fmt,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;

use crate::{
    domain::{
        Id, Idempotency,
        audit::{ChainBreak, ChainSummary, WriteContext},
        check::{CheckedBatch, Known, References},
        records::RecordKey,
        registry::{
            Agency, Membership, MembershipPatch, NewAgency, NewMembership, NewPartnership, Partnership,
        },
        submission::{RecordFilter, RecordRevision, ReportData, StoredRecord, SubmitOutcome},
    },
    error::{Error, Result},
};

mod audit;
mod batch;
pub mod codec;
mod listing;
pub mod postgres;
pub mod registry;
mod rows;
pub mod sqlite;

/// A page of a list, in ascending key order: keys strictly after `after`, at most
/// `limit` of them.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

/// Everything the service stores. Implementations must make each write atomic and
/// durable before returning, and idempotent under a request id; every accepted write
/// appends its entry to the audit log (who, which method, which keys) in its own
/// transaction, and a replayed one appends nothing.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// `sqlite` or `postgres`, for logs.
    fn backend(&self) -> &'static str;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Runs a registry write in one transaction (replaying the request id's stored
    /// answer instead, when it has one): inserts its rows (a unique-key conflict is the
    /// row's error), changes its partnerships' data versions, keeps `answer` with the
    /// request id and appends the audit entry. With `ctx.validate_only` it inserts and
    /// rolls back. Returns the stored answer of a replay.
    async fn write_registry(
        &self,
        write: registry::RegistryWrite,
        ctx: &WriteContext,
        answer: serde_json::Value,
    ) -> Result<Option<serde_json::Value>>;

    /// ALREADY_EXISTS when the id is taken.
    async fn create_agency(&self, agency: NewAgency, ctx: &WriteContext) -> Result<Agency> {
        let (write, created) = registry::agencies(vec![agency]);
        let created = registry::single(created)?;
        let replayed = self.write_registry(write, ctx, registry::answer(&created)?).await?;
        registry::returned(created, replayed)
    }

    /// All or none; ALREADY_EXISTS when an id is taken.
    async fn create_agencies(&self, agencies: Vec<NewAgency>, ctx: &WriteContext) -> Result<Vec<Agency>> {
        let (write, created) = registry::agencies(agencies);
        let replayed = self.write_registry(write, ctx, registry::answer(&created)?).await?;
        registry::returned(created, replayed)
    }

    async fn get_agency(&self, id: &Id) -> Result<Option<Agency>>;
    async fn list_agencies(&self, page: PageRequest) -> Result<Vec<Agency>>;

    /// ALREADY_EXISTS when the id is taken.
    async fn create_partnership(
        &self,
        partnership: NewPartnership,
        ctx: &WriteContext,
    ) -> Result<Partnership> {
        let (write, created) = registry::partnerships(vec![partnership]);
        let created = registry::single(created)?;
        let replayed = self.write_registry(write, ctx, registry::answer(&created)?).await?;
        registry::returned(created, replayed)
    }

    /// All or none; ALREADY_EXISTS when an id is taken.
    async fn create_partnerships(
        &self,
        partnerships: Vec<NewPartnership>,
        ctx: &WriteContext,
    ) -> Result<Vec<Partnership>> {
        let (write, created) = registry::partnerships(partnerships);
        let replayed = self.write_registry(write, ctx, registry::answer(&created)?).await?;
        registry::returned(created, replayed)
    }
    async fn get_partnership(&self, id: &Id) -> Result<Option<Partnership>>;
    async fn list_partnerships(&self, page: PageRequest) -> Result<Vec<Partnership>>;
    /// The partnerships `agency` is or was a member of, in id order.
    async fn list_partnerships_of(&self, agency: &Id, page: PageRequest) -> Result<Vec<Partnership>>;
    /// Whether `agency` has a membership of `partnership`, current or ended.
    /// Memberships are never deleted, so a `true` stays true.
    async fn is_or_was_member(&self, partnership: &Id, agency: &Id) -> Result<bool>;

    /// The partnership and the agency must exist (callers check first: neither can be
    /// deleted, so a positive check stays true). ALREADY_EXISTS when the agency already
    /// has a membership of the partnership.
    async fn create_membership(&self, membership: NewMembership, ctx: &WriteContext) -> Result<Membership> {
        let (write, created) = registry::memberships(vec![membership]);
        let created = registry::single(created)?;
        let replayed = self.write_registry(write, ctx, registry::answer(&created)?).await?;
        registry::returned(created, replayed)
    }

    /// As `create_membership`, all or none.
    async fn create_memberships(
        &self,
        memberships: Vec<NewMembership>,
        ctx: &WriteContext,
    ) -> Result<Vec<Membership>> {
        let (write, created) = registry::memberships(memberships);
        let replayed = self.write_registry(write, ctx, registry::answer(&created)?).await?;
        registry::returned(created, replayed)
    }
    /// NOT_FOUND when there is no such membership; INVALID_ARGUMENT, on the field
    /// (`role`, `start_date` or `end_date`), when the patched terms are invalid.
    async fn update_membership(
        &self,
        partnership: &Id,
        agency: &Id,
        patch: MembershipPatch,
        ctx: &WriteContext,
    ) -> Result<Membership>;
    async fn list_memberships(&self, partnership: &Id, page: PageRequest) -> Result<Vec<Membership>>;

    /// Which of the named agencies and partnerships are registered.
    async fn known_ids(&self, refs: &References) -> Result<Known>;

    /// The stored outcome of an earlier batch with this request id, if any;
    /// REQUEST_ID_REUSED when that id was used for a different request.
    async fn replay_submission(&self, idem: &Idempotency) -> Result<Option<SubmitOutcome>>;

    /// Makes the batch's precondition checks against the stored records and, if every
    /// record passed, stores the batch in one transaction (records, audit trail,
    /// request id); otherwise returns the rejection and stores nothing. With
    /// `ctx.owner` set, a record replacing a stored one that another agency reported
    /// refuses the batch (PERMISSION_DENIED).
    async fn submit_records(&self, batch: CheckedBatch, ctx: WriteContext) -> Result<SubmitOutcome>;

    /// Current records matching the filter, in ascending key order.
    async fn list_records(&self, filter: &RecordFilter, page: PageRequest) -> Result<Vec<StoredRecord>>;

    /// The current reporting agency of the record with this key, if it exists.
    async fn record_reporting_agency(&self, key: &RecordKey) -> Result<Option<Id>>;

    /// A record's revisions after `page.after` (a revision number), oldest first,
    /// each with who wrote it.
    async fn list_record_revisions(&self, key: &RecordKey, page: PageRequest) -> Result<Vec<RecordRevision>>;

    /// Everything the reports of `partnerships` for periods inside `from..=to` may
    /// use, one `ReportData` per partnership in the order given, read from one
    /// snapshot: each one's memberships; its records whose span overlaps the range;
    /// its adoptions and endorsements dated up to `to`; the restructuring events of
    /// every agency with a membership of it, dated from 24 months before `from` up to
    /// `to`. An unknown partnership gets empty data (callers check existence first,
    /// with `data_version`).
    async fn report_data(
        &self,
        partnerships: &[Id],
        from: crate::domain::Date,
        to: crate::domain::Date,
    ) -> Result<Vec<ReportData>>;

    /// Each partnership's data version, in the order given: it changes in the same
    /// transaction as every write that can change one of its reports (its records,
    /// its memberships, its members' restructuring events). `None` for an unknown
    /// partnership. A cached report is valid exactly while its partnership's version
    /// is unchanged. One call for many, so an export chunk costs one query.
    async fn data_versions(&self, partnerships: &[Id]) -> Result<Vec<Option<i64>>>;

    /// Recomputes the audit log's hash chain from one snapshot: its summary, or the
    /// first entry that is missing or altered.
    async fn verify_audit(&self) -> Result<std::result::Result<ChainSummary, ChainBreak>>;

    /// Forgets request ids older than the retention; returns how many were removed.
    async fn purge_request_log(&self, older_than: crate::domain::Timestamp) -> Result<u64>;

    /// Closes connections; later calls fail.
    async fn close(&self);

    /// The connections of the store's pool, for `db.client.connection.count`.
    fn pool_usage(&self) -> crate::telemetry::metrics::PoolUsage;
}

/// A store's pool, watched by the metrics.
#[derive(Debug)]
pub struct ObservedPool(pub Arc<dyn Store>);

impl crate::telemetry::metrics::PoolObserved for ObservedPool {
    fn pool_name(&self) -> &'static str {
        self.0.backend()
    }

    fn pool_usage(&self) -> crate::telemetry::metrics::PoolUsage {
        self.0.pool_usage()
    }
}

/// Opens the store a database URL names and brings its schema up to date:
/// `postgres://...` (or `postgresql://...`) for PostgreSQL; `sqlite://path`,
/// `sqlite:path` or a bare path for SQLite.
pub async fn open(database_url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match Backend::of(database_url)? {
        Backend::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(&path).await?)),
        Backend::Postgres => Ok(Arc::new(postgres::PostgresStore::open(database_url).await?)),
    }
}

/// [`open`], first waiting up to `wait` for a PostgreSQL server to answer (containers
/// start in any order): each failed attempt is logged at WARN with its cause.
pub async fn open_waiting(database_url: &str, wait: std::time::Duration) -> anyhow::Result<Arc<dyn Store>> {
    if Backend::of(database_url)? == Backend::Postgres {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match postgres::PostgresStore::probe(database_url).await {
                Ok(()) => break,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "PostgreSQL is not reachable yet; retrying for up to {} s in all",
                        wait.as_secs()
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    open(database_url).await
}

/// Recomputes the audit chain of the database a URL names, without migrating it or
/// taking it over: it may be in use by a running server (SQLite is opened read-only).
pub async fn verify_audit(
    database_url: &str,
) -> anyhow::Result<std::result::Result<ChainSummary, ChainBreak>> {
    use sqlx::Connection;
    let verdict = match Backend::of(database_url)? {
        Backend::Sqlite(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).read_only(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            let mut tx = conn.begin().await?;
            let verdict = audit::verify_sqlite(&mut tx).await?;
            tx.commit().await?;
            verdict
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(database_url).await?;
            let mut tx = conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
            let verdict = audit::verify_postgres(&mut tx).await?;
            tx.commit().await?;
            verdict
        }
    };
    Ok(verdict)
}

pub(crate) fn unknown_membership(partnership: &Id, agency: &Id) -> Error {
    Error::not_found(
        crate::error::reason::UNKNOWN_MEMBERSHIP,
        format!("agency {agency} has no membership of partnership {partnership}"),
    )
    .with_metadata("partnership", partnership.as_str())
    .with_metadata("agency", agency.as_str())
}

#[derive(Debug, PartialEq, Eq)]
enum Backend {
    Sqlite(String),
    Postgres,
}

impl Backend {
    fn of(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres);
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path.is_empty() {
            anyhow::bail!("database URL {} names no file", crate::configuration::redact_url(url));
        }
        if path.contains("://") {
            anyhow::bail!(
                "unsupported database URL scheme in {}: use sqlite:// or postgres://",
                crate::configuration::redact_url(url)
            );
        }
        Ok(Backend::Sqlite(path.to_string()))
    }
}

/// Sorts fetched rows into one `ReportData` per partnership: records by their
/// partnership, restructuring events (which have none) to every partnership with a
/// membership of their agency.
pub(crate) fn assemble_report_data(
    partnerships: &[Id],
    memberships: Vec<crate::domain::registry::Membership>,
    records: Vec<crate::domain::records::Record>,
) -> Vec<ReportData> {
    use std::collections::HashMap;
    let index: HashMap<&Id, usize> = partnerships.iter().enumerate().map(|(i, p)| (p, i)).collect();
    let mut out: Vec<ReportData> = partnerships.iter().map(|_| ReportData::default()).collect();
    let mut by_agency: HashMap<Id, Vec<usize>> = HashMap::new();
    for m in memberships {
        if let Some(&i) = index.get(&m.partnership) {
            by_agency.entry(m.agency.clone()).or_default().push(i);
            out[i].memberships.push(m);
        }
    }
    for record in records {
        match record.partnership() {
            Some(p) => {
                if let Some(&i) = index.get(p) {
                    out[i].records.push(record);
                }
            }
            None => {
                if let Some(targets) = by_agency.get(record.reporting_agency()) {
                    for &i in targets {
                        out[i].records.push(record.clone());
                    }
                }
            }
        }
    }
    out
}

/// Registered ids seen before. Agencies and partnerships are never deleted, so a
/// positive answer never goes stale, on one server or many.
#[derive(Debug, Default)]
pub(crate) struct KnownIdCache {
    agencies: RwLock<HashSet<Id>>,
    partnerships: RwLock<HashSet<Id>>,
    /// (partnership, agency) pairs seen to have a membership; never deleted either.
    memberships: RwLock<HashSet<(Id, Id)>>,
}

impl KnownIdCache {
    pub fn is_member(&self, partnership: &Id, agency: &Id) -> bool {
        self.memberships
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&(partnership.clone(), agency.clone()))
    }

    pub fn learn_member(&self, partnership: &Id, agency: &Id) {
        self.memberships
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((partnership.clone(), agency.clone()));
    }

    /// The cached part of the answer, and the well-formed ids still to look up.
    pub fn split(&self, refs: &References) -> (Known, Vec<Id>, Vec<Id>) {
        let mut known = Known::default();
        let split = |names: &std::collections::BTreeSet<String>,
                     cache: &RwLock<HashSet<Id>>,
                     hits: &mut HashSet<Id>| {
            let cache = cache.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut misses = Vec::new();
            for id in names.iter().filter_map(|s| Id::parse(s).ok()) {
                if cache.contains(&id) {
                    hits.insert(id);
                } else {
                    misses.push(id);
                }
            }
            misses
        };
        let agencies = split(&refs.agencies, &self.agencies, &mut known.agencies);
        let partnerships = split(&refs.partnerships, &self.partnerships, &mut known.partnerships);
        (known, agencies, partnerships)
    }

    /// Records ids found in the database, in the cache and in the answer.
    pub fn learn(&self, known: &mut Known, agencies: Vec<Id>, partnerships: Vec<Id>) {
        let mut cache = self.agencies.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for id in agencies {
            cache.insert(id.clone());
            known.agencies.insert(id);
        }
        drop(cache);
        let mut cache = self.partnerships.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for id in partnerships {
            cache.insert(id.clone());
            known.partnerships.insert(id);
        }
    }
}

/// A connection from a pool, the wait recorded (`db.client.connection.wait_time`).
pub(crate) async fn acquire<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    name: &'static str,
) -> Result<sqlx::pool::PoolConnection<DB>> {
    let started = std::time::Instant::now();
    let conn = pool.acquire().await?;
    crate::telemetry::metrics::metrics().connection_wait(name, started.elapsed());
    Ok(conn)
}

/// What `db.client.connection.count` says of a pool.
pub(crate) fn pool_usage<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> crate::telemetry::metrics::PoolUsage {
    let idle = pool.num_idle() as u64;
    crate::telemetry::metrics::PoolUsage { used: u64::from(pool.size()).saturating_sub(idle), idle }
}

/// Maps a unique-key violation to ALREADY_EXISTS and anything else to an internal
/// error with its cause.
pub(crate) fn conflict_or_internal(e: sqlx::Error, on_conflict: impl FnOnce() -> Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => on_conflict(),
        _ => Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_shape_of_database_url_prints_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let in_dir = |s: &str| format!("{}/{s}", dir.path().display());
        for url in [
            "postgress://pm:S3cret@127.0.0.1:1/pm".to_string(),
            "postgres://pm:S3cret@127.0.0.1:1/pm".to_string(),
            "postgres://pm:S3c@ret@127.0.0.1:1/pm".to_string(),
            "postgres://127.0.0.1:1/pm?password=S3cret".to_string(),
            "postgres://pm:S3cret@127.0.0.1:notaport/pm".to_string(),
            format!("sqlite://{}", in_dir("missing/dir/pm:S3cret@x.db")),
            in_dir("nowhere/pm:S3cret@host/db"),
            "mysql://pm:S3cret@db/pm".to_string(),
        ] {
            let e = open(&url).await.expect_err(&url);
            let shown = format!("{e:#} {e:?}");
            assert!(!shown.contains("S3cret"), "{url}: {shown}");
        }
    }

    #[test]
    fn database_urls_select_a_backend() {
        assert_eq!(Backend::of("sqlite://data/pm.db").unwrap(), Backend::Sqlite("data/pm.db".into()));
        assert_eq!(Backend::of("sqlite:pm.db").unwrap(), Backend::Sqlite("pm.db".into()));
        assert_eq!(Backend::of("./pm.db").unwrap(), Backend::Sqlite("./pm.db".into()));
        assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert!(Backend::of("mysql://h/db").is_err());
        assert!(Backend::of("sqlite://").is_err());
    }
}
