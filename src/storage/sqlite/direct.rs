//! Direct rusqlite connections for the two hot paths of the SQLite store: submitting
//! batches and reading report data.
//!
//! Everything else in the SQLite store uses sqlx. sqlx's SQLite driver runs each
//! connection on a worker thread: every statement and every returned row crosses a
//! channel, and every bound value is copied into an argument buffer before SQLite
//! copies it again. Profiles of a record stream and of a report export showed that
//! machinery costing about a third of the server's CPU on these paths (context
//! switches, channel locks, a row object per row, argument copies). Here prepared
//! statements are reused inside one transaction on a blocking thread, the path the
//! benchmarks' anchors take. Durability is unchanged: WAL, `synchronous=FULL`,
//! foreign keys on, `BEGIN IMMEDIATE` for writes; SQLite's lock orders these writes
//! with sqlx's registry writes.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::super::{
    assemble_report_data, audit,
    batch::{PreparedBatch, replaced_by_other_agency},
    codec,
};
use crate::{
    domain::{
        Date, Id, Idempotency, Timestamp,
        audit::WriteContext,
        check::{CheckedBatch, FactQuery, PreconditionFacts},
        records::{RecordKind, key_range},
        registry::Membership,
        submission::{ReportData, SubmitOutcome},
    },
    error::{Error, Result},
    storage::rows::{stored_day, stored_id, stored_terms},
};

fn db(e: rusqlite::Error) -> Error {
    Error::internal(anyhow::anyhow!("SQLite: {e}"))
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

fn open(path: &str, read_only: bool) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    if !read_only {
        // The file is in WAL mode already (sqlx set it on open); these are per
        // connection.
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    }
    Ok(conn)
}

/// Read-only connections, kept for reuse.
#[derive(Debug)]
pub(super) struct Readers {
    path: String,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

/// Idle read connections kept; more are opened under load and closed after.
const KEEP_IDLE: usize = 4;

impl Readers {
    pub(super) fn new(path: &str) -> Self {
        Readers { path: path.to_string(), idle: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on an idle connection (or a new one), then keeps the connection.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut rusqlite::Connection) -> Result<R>) -> Result<R> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match taken {
            Some(c) => c,
            None => open(&self.path, true)?,
        };
        let result = f(&mut conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEEP_IDLE {
            idle.push(conn);
        }
        result
    }
}

/// The one connection batches are written through (SQLite has one writer at a time).
#[derive(Debug)]
pub(super) struct Writer {
    conn: Mutex<Option<rusqlite::Connection>>,
    path: String,
}

impl Writer {
    pub(super) fn new(path: &str) -> Self {
        Writer { conn: Mutex::new(None), path: path.to_string() }
    }

    /// Checks the batch's preconditions and writes it in one `BEGIN IMMEDIATE`
    /// transaction; returns the outcome and the data versions it committed.
    pub(super) fn submit(
        &self,
        batch: &CheckedBatch,
        ctx: &WriteContext,
    ) -> Result<(SubmitOutcome, Vec<(String, i64)>)> {
        let waiting = std::time::Instant::now();
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        crate::telemetry::metrics::metrics().connection_wait("sqlite-writer", waiting.elapsed());
        if guard.is_none() {
            *guard = Some(open(&self.path, false)?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(Error::internal(anyhow::anyhow!("no writer connection")));
        };
        let result = submit(conn, batch, ctx);
        if result.as_ref().is_err_and(|e| e.source.is_some()) {
            // A database failure may leave the connection unusable; reopen next time.
            *guard = None;
        }
        result
    }
}

fn submit(
    conn: &mut rusqlite::Connection,
    batch: &CheckedBatch,
    ctx: &WriteContext,
) -> Result<(SubmitOutcome, Vec<(String, i64)>)> {
    let idem = ctx.idem.as_ref();
    let query = batch.fact_query();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
    if let Some(idem) = idem
        && let Some(done) = replay(&tx, idem)?
    {
        return Ok((done, Vec::new()));
    }
    let facts = if query.is_empty() { PreconditionFacts::default() } else { load_facts(&tx, &query)? };
    // A rejection drops the transaction unused: nothing is stored.
    let records = batch.apply_preconditions(&facts)?;
    let prepared = PreparedBatch::new(&records)?;
    let now = Timestamp::now();
    let request_id = idem.map(|i| i.request_id.as_str());
    let write_id: i64 = tx.query_row(audit::SQLITE_NEXT_WRITE_ID, [], |r| r.get(0)).map_err(db)?;
    let owner = ctx.owner.as_ref().map(Id::as_str);

    let mut written = HashMap::with_capacity(prepared.keys.len());
    {
        // Most keys of a batch are new: a plain insert, as fast as the direct path
        // gets. A key already stored (a correction) makes the unique index refuse the
        // insert, and is updated instead, its revision advanced by the batch's writes
        // (only if the caller may replace it: see `owner`).
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO records (key, kind, partnership_id, reporting_agency, span_start, span_end, revision, update_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(db)?;
        let mut update = tx
            .prepare_cached(
                "UPDATE records SET reporting_agency = ?2, span_start = ?3, span_end = ?4, \
                 revision = revision + ?5, update_time = ?6 \
                 WHERE key = ?1 AND (?7 IS NULL OR reporting_agency = ?7) RETURNING id, revision",
            )
            .map_err(db)?;
        for w in &prepared.keys {
            let inserted = insert.execute((
                w.key.as_str(),
                w.kind,
                w.partnership.as_deref(),
                w.reporting_agency.as_str(),
                w.span_start,
                w.span_end,
                w.writes,
                now.0,
            ));
            let row = match inserted {
                Ok(_) => (tx.last_insert_rowid(), w.writes),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    update
                        .query_row(
                            (
                                w.key.as_str(),
                                w.reporting_agency.as_str(),
                                w.span_start,
                                w.span_end,
                                w.writes,
                                now.0,
                                owner,
                            ),
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(db)?
                        // Stored, but reported by another agency: nothing of the
                        // batch is kept (the transaction is dropped).
                        .ok_or_else(|| replaced_by_other_agency(&records, &w.key))?
                }
                Err(e) => return Err(db(e)),
            };
            written.insert(w.key.clone(), row);
        }
    }
    if ctx.validate_only {
        // Every check has run and the counts are known: roll back (dropping the
        // transaction) before anything that outlives it.
        let (outcome, _) = prepared.finish(&written, now)?;
        return Ok((SubmitOutcome { validated_only: true, ..outcome }, Vec::new()));
    }
    let bumped = bump_versions(&tx, &prepared)?;
    let keys = prepared.keys.iter().map(|w| w.key.clone()).collect();
    let (outcome, revisions) = prepared.finish(&written, now)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO record_revisions (record_id, revision, request_id, commit_time, content, write_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(db)?;
        for r in &revisions {
            insert
                .execute((r.record_id, r.revision, request_id, now.0, r.content.as_slice(), write_id))
                .map_err(db)?;
        }
    }
    if let Some(idem) = idem {
        let json = serde_json::to_string(&outcome.stored()).map_err(|e| Error::internal(e.into()))?;
        tx.execute(
            "INSERT INTO request_log (request_id, method, fingerprint, response, create_time) VALUES (?1, ?2, ?3, ?4, ?5)",
            (idem.request_id.as_str(), idem.method, &idem.fingerprint[..], json, now.0),
        )
        .map_err(db)?;
    }
    audit::append_rusqlite(&tx, ctx, write_id, now, keys)?;
    tx.commit().map_err(db)?;
    Ok((outcome, bumped))
}

/// The stored outcome of an earlier batch with the same request id, or
/// REQUEST_ID_REUSED if that id was used for a different request.
fn replay(tx: &rusqlite::Transaction<'_>, idem: &Idempotency) -> Result<Option<SubmitOutcome>> {
    let row: Option<(String, Vec<u8>, String)> = tx
        .query_row(
            "SELECT method, fingerprint, response FROM request_log WHERE request_id = ?1",
            [idem.request_id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((method, fingerprint, response)) = row else { return Ok(None) };
    if method != idem.method || fingerprint != idem.fingerprint {
        return Err(Error::request_id_reused());
    }
    serde_json::from_str(&response)
        .map(Some)
        .map_err(|e| Error::internal(anyhow::anyhow!("decoding a stored response: {e}")))
}

/// Loads, inside the write transaction, the stored facts the precondition checks need.
fn load_facts(tx: &rusqlite::Transaction<'_>, query: &FactQuery) -> Result<PreconditionFacts> {
    let mut facts = PreconditionFacts::default();
    for (partnership, agency) in &query.memberships {
        let row: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT role, start_date, end_date FROM memberships WHERE partnership_id = ?1 AND agency_id = ?2",
                (partnership.as_str(), agency.as_str()),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db)?;
        if let Some((role, start, end)) = row {
            facts.memberships.insert((partnership.clone(), agency.clone()), stored_terms(role, start, end)?);
        }
    }
    for (partnership, version) in &query.adoptions {
        let key = format!("{}/{partnership}/{version}", RecordKind::PrinciplesAdoption.snake_name());
        let start: Option<i64> = tx
            .query_row("SELECT span_start FROM records WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(db)?;
        if let Some(start) = start {
            facts.adoptions.insert((partnership.clone(), *version), stored_day(start)?);
        }
    }
    for (partnership, version) in &query.endorsements {
        let (prefix, upper) = key_range(&format!(
            "{}/{partnership}/{version}/",
            RecordKind::PrinciplesEndorsement.snake_name()
        ));
        let mut stmt = tx
            .prepare_cached("SELECT reporting_agency, span_start FROM records WHERE key >= ?1 AND key < ?2")
            .map_err(db)?;
        let mut rows = stmt.query((prefix.as_str(), upper.as_str())).map_err(db)?;
        let mut endorsements = BTreeMap::new();
        while let Some(row) = rows.next().map_err(db)? {
            endorsements.insert(stored_id(row.get(0).map_err(db)?)?, stored_day(row.get(1).map_err(db)?)?);
        }
        facts.endorsements.insert((partnership.clone(), *version), endorsements);
    }
    Ok(facts)
}

/// Bumps the data version of every partnership the batch can change; returns the new
/// versions.
fn bump_versions(tx: &rusqlite::Transaction<'_>, prepared: &PreparedBatch) -> Result<Vec<(String, i64)>> {
    let mut bumped = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached("UPDATE partnerships SET data_version = data_version + 1 WHERE id = ?1 RETURNING data_version")
            .map_err(db)?;
        for p in &prepared.partnerships {
            if let Some(v) = stmt.query_row([p], |r| r.get::<_, i64>(0)).optional().map_err(db)? {
                bumped.push((p.clone(), v));
            }
        }
    }
    let mut stmt = tx
        .prepare_cached(
            "UPDATE partnerships SET data_version = data_version + 1 WHERE id IN \
             (SELECT partnership_id FROM memberships WHERE agency_id = ?1) RETURNING id, data_version",
        )
        .map_err(db)?;
    for a in &prepared.event_agencies {
        let mut rows = stmt.query([a]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            bumped.push((row.get(0).map_err(db)?, row.get(1).map_err(db)?));
        }
    }
    Ok(bumped)
}

/// Reads everything the reports of `partnerships` may use, in one read transaction
/// (one snapshot), two statements per chunk of partnerships.
pub(super) fn read_report_data(
    conn: &mut rusqlite::Connection,
    partnerships: &[Id],
    from: Date,
    to: Date,
) -> Result<Vec<ReportData>> {
    /// Partnerships per statement: each is bound three times.
    const CHUNK: usize = 150;
    let mut memberships = Vec::new();
    let mut records = Vec::new();
    // D6 looks back two windows of 12 calendar months from each period's end.
    let events_from = from.first_of_month_minus(24).unwrap_or(Date::MIN).to_days();
    let tx = conn.transaction().map_err(db)?;
    for chunk in partnerships.chunks(CHUNK) {
        let list = |first: usize| {
            (first..first + chunk.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
        };
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT partnership_id, agency_id, role, start_date, end_date, create_time, update_time \
                 FROM memberships WHERE partnership_id IN ({})",
                list(1)
            ))
            .map_err(db)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(chunk.iter().map(Id::as_str))).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            memberships.push(membership(row)?);
        }
        drop(rows);
        let ids = list(4);
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT v.content FROM records r \
                   JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
                   WHERE r.partnership_id IN ({ids}) AND r.kind IN (1, 2, 3, 4, 5, 9) \
                     AND r.span_end >= ?1 AND r.span_start <= ?2 \
                 UNION ALL \
                 SELECT v.content FROM records r \
                   JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
                   WHERE r.partnership_id IN ({ids}) AND r.kind IN (6, 7) AND r.span_start <= ?2 \
                 UNION ALL \
                 SELECT v.content FROM records r \
                   JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
                   WHERE r.kind = 8 AND r.span_start >= ?3 AND r.span_start <= ?2 \
                     AND r.reporting_agency IN (SELECT agency_id FROM memberships WHERE partnership_id IN ({ids}))"
            ))
            .map_err(db)?;
        let params: Vec<rusqlite::types::Value> = [from.to_days(), to.to_days(), events_from]
            .into_iter()
            .map(|d| rusqlite::types::Value::Integer(d.into()))
            .chain(chunk.iter().map(|p| rusqlite::types::Value::Text(p.to_string())))
            .collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let content = row.get_ref(0).map_err(db)?.as_blob().map_err(|e| db(e.into()))?;
            records.push(codec::decode(content)?);
        }
    }
    tx.commit().map_err(db)?;
    Ok(assemble_report_data(partnerships, memberships, records))
}

/// Columns: partnership_id, agency_id, role, start_date, end_date, create_time,
/// update_time.
fn membership(row: &rusqlite::Row<'_>) -> Result<Membership> {
    let text = |i: usize| row.get::<_, String>(i).map_err(db);
    Ok(Membership {
        partnership: stored_id(text(0)?)?,
        agency: stored_id(text(1)?)?,
        terms: stored_terms(text(2)?, text(3)?, row.get(4).map_err(db)?)?,
        create_time: Timestamp(row.get(5).map_err(db)?),
        update_time: Timestamp(row.get(6).map_err(db)?),
    })
}
