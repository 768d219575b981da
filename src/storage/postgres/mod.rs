//! The scale-out backend: several stateless replicas over one PostgreSQL database.
//!
//! Correctness across replicas rests on the database, never on process memory:
//! request ids are claimed by inserting them first in the write's own transaction (a
//! second replica with the same id waits on the unique key, then replays the stored
//! response); keys are upserted in ascending order so concurrent batches lock rows in
//! one order; adoption and endorsement checks hold a transaction-scoped advisory lock
//! per partnership; deadlocks and serialization failures are retried.

mod records;
mod versions;

use std::{str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{
    Connection, PgConnection, Row,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
};
use tracing::info;

use super::{
    KnownIdCache, PageRequest, Store, audit, conflict_or_internal,
    rows::{self, membership_columns},
};
use crate::storage::{listing::bind_all, registry::RegistryWrite};
use crate::{
    domain::{
        Date, Id, Idempotency, Timestamp,
        audit::{ChainBreak, ChainSummary, WriteContext},
        check::{CheckedBatch, Known, References},
        records::RecordKey,
        registry::{Agency, Membership, MembershipPatch, Partnership},
        submission::{RecordFilter, RecordRevision, ReportData, StoredRecord, SubmitOutcome},
    },
    error::{Error, Result, reason},
};

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    known: Arc<KnownIdCache>,
    versions: versions::VersionReads,
}

/// How long the first connection may take at start-up.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn redact_secrets(s: &str) -> String {
    crate::configuration::redact_url(s)
}

/// Connections per replica; PostgreSQL's default limit is 100 in all.
const MAX_CONNECTIONS: u32 = 16;

impl PostgresStore {
    fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("reading the PostgreSQL URL: {}", redact_secrets(&e.to_string())))?
            .application_name("partnership-metrics"))
    }

    /// One connection, briefly: an unreachable server or bad credentials are reported
    /// at once, with the cause, instead of after the pool's timeout.
    async fn first_connection(options: &PgConnectOptions) -> anyhow::Result<()> {
        let where_ = format!("{}:{}", options.get_host(), options.get_port());
        match tokio::time::timeout(FIRST_CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
            Err(_) => anyhow::bail!(
                "connecting to PostgreSQL at {where_}: no answer within {} s",
                FIRST_CONNECT_TIMEOUT.as_secs()
            ),
            Ok(Err(e)) => {
                anyhow::bail!("connecting to PostgreSQL at {where_}: {}", redact_secrets(&e.to_string()))
            }
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
        }
    }

    /// Whether the server the URL names answers now.
    pub async fn probe(url: &str) -> anyhow::Result<()> {
        Self::first_connection(&Self::options(url)?).await
    }

    /// Connects and brings the schema up to date. sqlx holds a PostgreSQL advisory
    /// lock while migrating, so replicas starting together apply each migration once.
    pub async fn open(url: &str) -> anyhow::Result<PostgresStore> {
        let options = Self::options(url)?;
        Self::first_connection(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {e}"))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("migrating the PostgreSQL database: {e}"))?;
        info!("PostgreSQL database open and migrated");
        Ok(PostgresStore { versions: versions::VersionReads::new(pool.clone()), pool, known: Arc::default() })
    }
}

impl PostgresStore {
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        super::acquire(&self.pool, "postgres").await
    }
}

/// The outcome of claiming a request id inside a write transaction.
enum Claim<T> {
    /// The id is ours; the response must be recorded before commit.
    Claimed,
    /// An earlier request with the id committed this response.
    Replayed(T),
}

/// Claims `idem` for this transaction, or returns the stored response of the earlier
/// request with the same id (REQUEST_ID_REUSED when that was a different request).
/// If another transaction holds the claim, this waits for it to finish.
async fn claim<T: DeserializeOwned>(conn: &mut PgConnection, idem: &Idempotency) -> Result<Claim<T>> {
    let inserted = sqlx::query(
        "INSERT INTO request_log (request_id, method, fingerprint, response, create_time) \
         VALUES ($1, $2, $3, '', $4) ON CONFLICT (request_id) DO NOTHING RETURNING 1",
    )
    .bind(idem.request_id.as_str())
    .bind(idem.method)
    .bind(&idem.fingerprint[..])
    .bind(Timestamp::now().0)
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(Claim::Claimed);
    }
    match stored_response(conn, idem).await? {
        Some(response) => Ok(Claim::Replayed(response)),
        None => Err(Error::internal(anyhow::anyhow!(
            "request id {} claimed but not stored",
            idem.request_id.as_str()
        ))),
    }
}

async fn stored_response<T: DeserializeOwned>(
    conn: &mut PgConnection,
    idem: &Idempotency,
) -> Result<Option<T>> {
    let row = sqlx::query("SELECT method, fingerprint, response FROM request_log WHERE request_id = $1")
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

/// Records the response of the request that claimed the id.
async fn remember<T: Serialize>(conn: &mut PgConnection, idem: &Idempotency, response: &T) -> Result<()> {
    let json = serde_json::to_string(response).map_err(|e| Error::internal(e.into()))?;
    sqlx::query("UPDATE request_log SET response = $2 WHERE request_id = $1")
        .bind(idem.request_id.as_str())
        .bind(json)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Serialises the adoption and endorsement checks, and membership changes, of one
/// partnership across replicas, until the transaction ends.
async fn lock_principles(conn: &mut PgConnection, partnership: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('pm-principles/' || $1, 0))")
        .bind(partnership)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A write id for the write's audit entry and record revisions.
async fn next_write_id(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar(audit::POSTGRES_NEXT_WRITE_ID).fetch_one(&mut *conn).await?)
}

/// Appends the write's audit entry: the last statement before commit, as it orders
/// every writer (see `storage/audit.rs`).
async fn audit(
    conn: &mut PgConnection,
    ctx: &WriteContext,
    time: Timestamp,
    keys: Vec<String>,
) -> Result<()> {
    let write_id = next_write_id(conn).await?;
    audit::append_postgres(conn, ctx, write_id, time, keys).await
}

async fn bump_data_version(conn: &mut PgConnection, partnership: &Id) -> Result<()> {
    sqlx::query("UPDATE partnerships SET data_version = data_version + 1 WHERE id = $1")
        .bind(partnership.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether an error is one a retry of the whole transaction resolves: a deadlock, a
/// serialization failure, or a record key that a concurrent batch inserted after this
/// one found it absent (`records::write_records`).
pub(crate) fn is_retryable(e: &Error) -> bool {
    let Some(sqlx::Error::Database(db)) = e.source.as_ref().and_then(|s| s.downcast_ref::<sqlx::Error>())
    else {
        return false;
    };
    match db.code().as_deref() {
        Some("40P01" | "40001") => true,
        Some("23505") => db.constraint() == Some("records_key_key"),
        _ => false,
    }
}

fn limit(page: &PageRequest) -> i64 {
    i64::from(page.limit)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn write_registry(
        &self,
        write: RegistryWrite,
        ctx: &WriteContext,
        answer: serde_json::Value,
    ) -> Result<Option<serde_json::Value>> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if let Some(idem) = &ctx.idem
            && let Claim::Replayed(done) = claim(&mut tx, idem).await?
        {
            return Ok(Some(done));
        }
        // Membership changes of a partnership are serialised with its principles
        // checks across replicas; in id order, so two writes never wait in a cycle.
        for p in &write.changes {
            lock_principles(&mut tx, p.as_str()).await?;
        }
        for (binds, exists) in write.rows {
            bind_all(sqlx::query(write.sql), binds)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or_internal(e, || exists))?;
        }
        // Validation only: dropping the transaction rolls back the rows and the claim.
        if ctx.validate_only {
            return Ok(None);
        }
        for p in &write.changes {
            bump_data_version(&mut tx, p).await?;
        }
        if let Some(idem) = &ctx.idem {
            remember(&mut tx, idem, &answer).await?;
        }
        audit(&mut tx, ctx, write.time, write.keys).await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut *self.conn().await?).await?;
        Ok(())
    }

    async fn get_agency(&self, id: &Id) -> Result<Option<Agency>> {
        let row = sqlx::query("SELECT id, display_name, sector, create_time FROM agencies WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(rows::agency).transpose()
    }

    async fn list_agencies(&self, page: PageRequest) -> Result<Vec<Agency>> {
        let rows = sqlx::query(
            "SELECT id, display_name, sector, create_time FROM agencies WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(limit(&page))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(rows::agency).collect()
    }

    async fn get_partnership(&self, id: &Id) -> Result<Option<Partnership>> {
        let row =
            sqlx::query("SELECT id, display_name, purpose, create_time FROM partnerships WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *self.conn().await?)
                .await?;
        row.as_ref().map(rows::partnership).transpose()
    }

    async fn list_partnerships(&self, page: PageRequest) -> Result<Vec<Partnership>> {
        let rows = sqlx::query(
            "SELECT id, display_name, purpose, create_time FROM partnerships WHERE id > $1 ORDER BY id LIMIT $2",
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
             WHERE m.agency_id = $1 AND m.partnership_id > $2 ORDER BY m.partnership_id LIMIT $3",
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
        let found = sqlx::query("SELECT 1 FROM memberships WHERE partnership_id = $1 AND agency_id = $2")
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
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        lock_principles(&mut tx, partnership.as_str()).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE partnership_id = $1 AND agency_id = $2 FOR UPDATE"
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
            "UPDATE memberships SET role = $1, start_date = $2, end_date = $3, update_time = $4 \
             WHERE partnership_id = $5 AND agency_id = $6",
        )
        .bind(membership.terms.role.as_str())
        .bind(membership.terms.start_date.to_string())
        .bind(membership.terms.end_date.map(|d| d.to_string()))
        .bind(membership.update_time.0)
        .bind(partnership.as_str())
        .bind(agency.as_str())
        .execute(&mut *tx)
        .await?;
        bump_data_version(&mut tx, partnership).await?;
        audit(&mut tx, ctx, membership.update_time, vec![membership.name()]).await?;
        tx.commit().await?;
        Ok(membership)
    }

    async fn list_memberships(&self, partnership: &Id, page: PageRequest) -> Result<Vec<Membership>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE partnership_id = $1 AND agency_id > $2 ORDER BY agency_id LIMIT $3"
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
        let mut conn = self.conn().await?;
        stored_response(&mut conn, idem).await
    }

    async fn submit_records(&self, batch: CheckedBatch, ctx: WriteContext) -> Result<SubmitOutcome> {
        self.submit_records_impl(batch, &ctx).await
    }

    async fn list_records(&self, filter: &RecordFilter, page: PageRequest) -> Result<Vec<StoredRecord>> {
        self.list_records_impl(filter, page).await
    }

    async fn record_reporting_agency(&self, key: &RecordKey) -> Result<Option<Id>> {
        let row = sqlx::query("SELECT reporting_agency FROM records WHERE key = $1")
            .bind(key.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.map(|r| rows::id_col(&r, 0)).transpose()
    }

    async fn list_record_revisions(&self, key: &RecordKey, page: PageRequest) -> Result<Vec<RecordRevision>> {
        self.list_record_revisions_impl(key, page).await
    }

    async fn report_data(&self, partnerships: &[Id], from: Date, to: Date) -> Result<Vec<ReportData>> {
        self.report_data_impl(partnerships, from, to).await
    }

    async fn data_versions(&self, partnerships: &[Id]) -> Result<Vec<Option<i64>>> {
        // Another replica may have written: the database is the only authority.
        self.versions.read(partnerships).await
    }

    async fn verify_audit(&self) -> Result<std::result::Result<ChainSummary, ChainBreak>> {
        let mut conn = self.conn().await?;
        let mut tx =
            sqlx::Connection::begin_with(&mut *conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
        let verdict = audit::verify_postgres(&mut tx).await?;
        tx.commit().await?;
        Ok(verdict)
    }

    async fn purge_request_log(&self, older_than: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM request_log WHERE create_time < $1")
            .bind(older_than.0)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn pool_usage(&self) -> crate::telemetry::metrics::PoolUsage {
        super::pool_usage(&self.pool)
    }
}
