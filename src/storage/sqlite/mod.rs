//! The embedded default backend: one SQLite file in WAL mode with
//! `synchronous=FULL` (a commit is on disk before it is acknowledged) and foreign keys
//! on. Writes run in `BEGIN IMMEDIATE` transactions so that a writer takes the lock at
//! the start and never fails half-way on a lock upgrade.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{
    Row, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
};
use tracing::info;

use crate::configuration::redact_url;

mod direct;
mod records;

use std::sync::Arc;

use super::{
    KnownIdCache, PageRequest, Store, audit, conflict_or_internal,
    rows::{self, membership_columns},
};
use crate::storage::{listing::bind_all, registry::RegistryWrite};
use crate::{
    domain::submission::{RecordFilter, RecordRevision, ReportData, StoredRecord, SubmitOutcome},
    domain::{
        Date, Id, Idempotency, Timestamp,
        audit::{ChainBreak, ChainSummary, WriteContext},
        check::{CheckedBatch, Known, References},
        records::RecordKey,
        registry::{Agency, Membership, MembershipPatch, Partnership},
    },
    error::{Error, Result, reason},
};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    known: Arc<KnownIdCache>,
    /// Every partnership's data version, and so every partnership's id. Authoritative
    /// because this process is the only writer (it holds `_owner`); updated after each
    /// commit, before the write is acknowledged, so a read that follows an
    /// acknowledged write sees it.
    versions: Arc<std::sync::RwLock<HashMap<String, i64>>>,
    _owner: Arc<std::fs::File>,
    /// The direct rusqlite paths for batches and report reads (see `direct`).
    readers: Arc<direct::Readers>,
    writer: Arc<direct::Writer>,
}

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database file at `path`.
    pub async fn open(path: &str) -> anyhow::Result<SqliteStore> {
        if path == ":memory:" {
            anyhow::bail!("an in-memory SQLite database cannot be served; give a file path");
        }
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let owner = Arc::new(lock_owner(path)?);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("opening SQLite database {}: {e}", redact_url(path)))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("migrating SQLite database {}: {e}", redact_url(path)))?;
        let versions: HashMap<String, i64> = sqlx::query_as("SELECT id, data_version FROM partnerships")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .collect();
        info!(path = %redact_url(path), partnerships = versions.len(), "SQLite database open and migrated");
        Ok(SqliteStore {
            pool,
            known: Arc::default(),
            versions: Arc::new(std::sync::RwLock::new(versions)),
            _owner: owner,
            readers: Arc::new(direct::Readers::new(path)),
            writer: Arc::new(direct::Writer::new(path)),
        })
    }

    /// Records data versions the transaction just committed.
    fn set_versions(&self, bumped: &[(String, i64)]) {
        let mut versions = self.versions.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (id, v) in bumped {
            versions.insert(id.clone(), *v);
        }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
        super::acquire(&self.pool, "sqlite").await
    }
}

/// Takes the process-wide ownership of a database file: an exclusive lock on a
/// sidecar file held for the store's life. SQLite serves one server process; a
/// second one on the same file would make the in-memory data versions wrong.
fn lock_owner(path: &str) -> anyhow::Result<std::fs::File> {
    let lock_path = format!("{path}.owner");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", redact_url(&lock_path)))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another partnership-metrics server is using {}; SQLite serves one process \
             (use PostgreSQL for several replicas)",
            redact_url(path)
        )
    })?;
    Ok(file)
}

/// The stored response of an earlier request with the same id, or REQUEST_ID_REUSED if
/// that request was a different one.
async fn replay<T: DeserializeOwned>(conn: &mut SqliteConnection, idem: &Idempotency) -> Result<Option<T>> {
    let row = sqlx::query("SELECT method, fingerprint, response FROM request_log WHERE request_id = ?")
        .bind(idem.request_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let method: String = row.try_get(0)?;
    let fingerprint: Vec<u8> = row.try_get(1)?;
    if method != idem.method || fingerprint != idem.fingerprint {
        return Err(Error::request_id_reused());
    }
    let response: String = row.try_get(2)?;
    serde_json::from_str(&response)
        .map(Some)
        .map_err(|e| Error::internal(anyhow::anyhow!("decoding stored response of {}: {e}", idem.method)))
}

async fn remember<T: Serialize>(conn: &mut SqliteConnection, idem: &Idempotency, response: &T) -> Result<()> {
    let json = serde_json::to_string(response).map_err(|e| Error::internal(e.into()))?;
    sqlx::query("INSERT INTO request_log (request_id, method, fingerprint, response, create_time) VALUES (?, ?, ?, ?, ?)")
        .bind(idem.request_id.as_str())
        .bind(idem.method)
        .bind(&idem.fingerprint[..])
        .bind(json)
        .bind(Timestamp::now().0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn limit(page: &PageRequest) -> i64 {
    i64::from(page.limit)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn write_registry(
        &self,
        write: RegistryWrite,
        ctx: &WriteContext,
        answer: serde_json::Value,
    ) -> Result<Option<serde_json::Value>> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        if let Some(idem) = &ctx.idem
            && let Some(done) = replay(&mut tx, idem).await?
        {
            return Ok(Some(done));
        }
        for (binds, exists) in write.rows {
            bind_all(sqlx::query(write.sql), binds)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or_internal(e, || exists))?;
        }
        // Validation only: the transaction is dropped, so nothing was written.
        if ctx.validate_only {
            return Ok(None);
        }
        let mut versions: Vec<(String, i64)> =
            write.created_partnerships.iter().map(|p| (p.to_string(), 0)).collect();
        for p in &write.changes {
            versions.push((p.to_string(), bump_data_version(&mut tx, p).await?));
        }
        if let Some(idem) = &ctx.idem {
            remember(&mut tx, idem, &answer).await?;
        }
        audit(&mut tx, ctx, write.time, write.keys).await?;
        tx.commit().await?;
        // Committed: the new versions are visible before the write is acknowledged.
        self.set_versions(&versions);
        Ok(None)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut *self.conn().await?).await?;
        Ok(())
    }

    async fn get_agency(&self, id: &Id) -> Result<Option<Agency>> {
        let row = sqlx::query("SELECT id, display_name, sector, create_time FROM agencies WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(rows::agency).transpose()
    }

    async fn list_agencies(&self, page: PageRequest) -> Result<Vec<Agency>> {
        let rows = sqlx::query(
            "SELECT id, display_name, sector, create_time FROM agencies WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(limit(&page))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(rows::agency).collect()
    }

    async fn get_partnership(&self, id: &Id) -> Result<Option<Partnership>> {
        let row = sqlx::query("SELECT id, display_name, purpose, create_time FROM partnerships WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(rows::partnership).transpose()
    }

    async fn list_partnerships(&self, page: PageRequest) -> Result<Vec<Partnership>> {
        let rows = sqlx::query(
            "SELECT id, display_name, purpose, create_time FROM partnerships WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(limit(&page))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(rows::partnership).collect()
    }

    async fn list_partnerships_of(&self, agency: &Id, page: PageRequest) -> Result<Vec<Partnership>> {
        let rows = sqlx::query(
            "SELECT p.id, p.display_name, p.purpose, p.create_time FROM memberships m \
             JOIN partnerships p ON p.id = m.partnership_id \
             WHERE m.agency_id = ? AND m.partnership_id > ? ORDER BY m.partnership_id LIMIT ?",
        )
        .bind(agency.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(limit(&page))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(rows::partnership).collect()
    }

    async fn is_or_was_member(&self, partnership: &Id, agency: &Id) -> Result<bool> {
        if self.known.is_member(partnership, agency) {
            return Ok(true);
        }
        let found = sqlx::query("SELECT 1 FROM memberships WHERE partnership_id = ? AND agency_id = ?")
            .bind(partnership.as_str())
            .bind(agency.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .is_some();
        if found {
            self.known.learn_member(partnership, agency);
        }
        Ok(found)
    }

    async fn update_membership(
        &self,
        partnership: &Id,
        agency: &Id,
        patch: MembershipPatch,
        ctx: &WriteContext,
    ) -> Result<Membership> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE partnership_id = ? AND agency_id = ?"
        ))
        .bind(partnership.as_str())
        .bind(agency.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(super::unknown_membership(partnership, agency));
        };
        let mut membership = rows::membership(&row)?;
        membership.terms = patch.apply(membership.terms).map_err(|field| {
            Error::invalid_field(reason::INVALID_REQUEST, field, "end_date must not be before start_date")
        })?;
        membership.update_time = Timestamp::now();
        sqlx::query(
            "UPDATE memberships SET role = ?, start_date = ?, end_date = ?, update_time = ? \
             WHERE partnership_id = ? AND agency_id = ?",
        )
        .bind(membership.terms.role.as_str())
        .bind(membership.terms.start_date.to_string())
        .bind(membership.terms.end_date.map(|d| d.to_string()))
        .bind(membership.update_time.0)
        .bind(partnership.as_str())
        .bind(agency.as_str())
        .execute(&mut *tx)
        .await?;
        let version = bump_data_version(&mut tx, partnership).await?;
        audit(&mut tx, ctx, membership.update_time, vec![membership.name()]).await?;
        tx.commit().await?;
        self.set_versions(&[(partnership.to_string(), version)]);
        Ok(membership)
    }

    async fn list_memberships(&self, partnership: &Id, page: PageRequest) -> Result<Vec<Membership>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE partnership_id = ? AND agency_id > ? ORDER BY agency_id LIMIT ?"
        ))
        .bind(partnership.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(limit(&page))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(rows::membership).collect()
    }

    async fn known_ids(&self, refs: &References) -> Result<Known> {
        self.known_ids_impl(refs).await
    }

    async fn replay_submission(&self, idem: &Idempotency) -> Result<Option<SubmitOutcome>> {
        self.replay_submission_impl(idem).await
    }

    async fn submit_records(&self, batch: CheckedBatch, ctx: WriteContext) -> Result<SubmitOutcome> {
        self.submit_records_impl(batch, ctx).await
    }

    async fn list_records(&self, filter: &RecordFilter, page: PageRequest) -> Result<Vec<StoredRecord>> {
        self.list_records_impl(filter, page).await
    }

    async fn record_reporting_agency(&self, key: &RecordKey) -> Result<Option<Id>> {
        self.record_reporting_agency_impl(key).await
    }

    async fn list_record_revisions(&self, key: &RecordKey, page: PageRequest) -> Result<Vec<RecordRevision>> {
        self.list_record_revisions_impl(key, page).await
    }

    async fn report_data(&self, partnerships: &[Id], from: Date, to: Date) -> Result<Vec<ReportData>> {
        self.report_data_impl(partnerships, from, to).await
    }

    async fn data_versions(&self, partnerships: &[Id]) -> Result<Vec<Option<i64>>> {
        // The map holds every partnership (loaded at start, extended by each create
        // after its commit), so an id missing from it is unknown.
        let versions = self.versions.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(partnerships.iter().map(|p| versions.get(p.as_str()).copied()).collect())
    }

    async fn verify_audit(&self) -> Result<std::result::Result<ChainSummary, ChainBreak>> {
        // One read transaction: one snapshot of the head and the entries.
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let verdict = audit::verify_sqlite(&mut tx).await?;
        tx.commit().await?;
        Ok(verdict)
    }

    async fn purge_request_log(&self, older_than: Timestamp) -> Result<u64> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let done = sqlx::query("DELETE FROM request_log WHERE create_time < ?")
            .bind(older_than.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn pool_usage(&self) -> crate::telemetry::metrics::PoolUsage {
        super::pool_usage(&self.pool)
    }
}

/// Appends the write's audit entry (the last statement of every write transaction).
async fn audit(
    conn: &mut SqliteConnection,
    ctx: &WriteContext,
    time: Timestamp,
    keys: Vec<String>,
) -> Result<()> {
    let write_id: i64 = sqlx::query_scalar(audit::SQLITE_NEXT_WRITE_ID).fetch_one(&mut *conn).await?;
    audit::append_sqlite(conn, ctx, write_id, time, keys).await
}

async fn bump_data_version(conn: &mut SqliteConnection, partnership: &Id) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "UPDATE partnerships SET data_version = data_version + 1 WHERE id = ? RETURNING data_version",
    )
    .bind(partnership.as_str())
    .fetch_one(&mut *conn)
    .await?)
}
