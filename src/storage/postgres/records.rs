//! Records on PostgreSQL: set-based writes (`INSERT ... SELECT FROM UNNEST`, one
//! statement per table per batch, never a statement per record), the audit trail,
//! listings and report reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{PgConnection, Row};
use tracing::debug;

use super::{Claim, PostgresStore, claim, is_retryable, lock_principles, next_write_id, remember};
use crate::{
    domain::{
        Date, Id, Timestamp,
        audit::WriteContext,
        check::{CheckedBatch, FactQuery, Known, PreconditionFacts, References},
        records::{RecordKey, RecordKind, key_range},
        submission::{RecordFilter, RecordRevision, ReportData, StoredRecord, SubmitOutcome},
    },
    error::{Error, Result},
    storage::{
        PageRequest, assemble_report_data, audit,
        batch::{KeyWrite, PreparedBatch, replaced_by_other_agency},
        codec, listing,
        rows::{self, id_col, membership_columns},
    },
};

/// Attempts of a batch that meets a deadlock or a serialization failure.
const ATTEMPTS: usize = 5;

impl PostgresStore {
    pub(super) async fn known_ids_impl(&self, refs: &References) -> Result<Known> {
        let (mut known, agencies, partnerships) = self.known.split(refs);
        let found_agencies = self.existing_ids("agencies", &agencies).await?;
        let found_partnerships = self.existing_ids("partnerships", &partnerships).await?;
        self.known.learn(&mut known, found_agencies, found_partnerships);
        Ok(known)
    }

    async fn existing_ids(&self, table: &'static str, ids: &[Id]) -> Result<Vec<Id>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = ids.iter().map(Id::as_str).collect();
        let sql = match table {
            "agencies" => "SELECT id FROM agencies WHERE id = ANY($1)",
            _ => "SELECT id FROM partnerships WHERE id = ANY($1)",
        };
        let rows = sqlx::query(sql).bind(&names).fetch_all(&mut *self.conn().await?).await?;
        rows.iter().map(|r| id_col(r, 0)).collect()
    }

    pub(super) async fn submit_records_impl(
        &self,
        batch: CheckedBatch,
        ctx: &WriteContext,
    ) -> Result<SubmitOutcome> {
        let mut attempt = 1;
        loop {
            match self.try_submit(&batch, ctx).await {
                Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                    debug!(attempt, "retrying a batch after a deadlock or serialization failure");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn try_submit(&self, batch: &CheckedBatch, ctx: &WriteContext) -> Result<SubmitOutcome> {
        let idem = ctx.idem.as_ref();
        let query = batch.fact_query();
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if let Some(idem) = idem
            && let Claim::Replayed(done) = claim(&mut tx, idem).await?
        {
            return Ok(done);
        }
        let facts = if query.is_empty() {
            PreconditionFacts::default()
        } else {
            // In id order, so two batches never wait on each other's locks in a cycle.
            let partnerships: BTreeSet<&Id> = query
                .memberships
                .iter()
                .map(|(p, _)| p)
                .chain(query.adoptions.iter().map(|(p, _)| p))
                .collect();
            for p in partnerships {
                lock_principles(&mut tx, p.as_str()).await?;
            }
            load_facts(&mut tx, &query).await?
        };
        let records = batch.apply_preconditions(&facts)?;
        let prepared = PreparedBatch::new(&records)?;
        let now = Timestamp::now();
        let request_id = idem.map(|i| i.request_id.as_str().to_string());
        let write_id = next_write_id(&mut tx).await?;

        let written = write_records(&mut tx, &prepared.keys, now, ctx.owner.as_ref(), |key| {
            replaced_by_other_agency(&records, key)
        })
        .await?;
        if ctx.validate_only {
            // Every check has run and the counts are known: dropping the transaction
            // rolls the batch and its request-id claim back.
            let (outcome, _) = prepared.finish(&written, now)?;
            return Ok(SubmitOutcome { validated_only: true, ..outcome });
        }
        let written_keys = prepared.keys.iter().map(|w| w.key.clone()).collect();
        let touched = (prepared.partnerships.clone(), prepared.event_agencies.clone());
        let (outcome, revisions) = prepared.finish(&written, now)?;
        sqlx::query(
            "INSERT INTO record_revisions (record_id, revision, request_id, commit_time, content, write_id) \
             SELECT record_id, revision, $3, $4, content, $6 \
             FROM UNNEST($1::int8[], $2::int8[], $5::bytea[]) AS t(record_id, revision, content)",
        )
        .bind(revisions.iter().map(|r| r.record_id).collect::<Vec<_>>())
        .bind(revisions.iter().map(|r| r.revision).collect::<Vec<_>>())
        .bind(&request_id)
        .bind(now.0)
        .bind(revisions.iter().map(|r| r.content.as_slice()).collect::<Vec<_>>())
        .bind(write_id)
        .execute(&mut *tx)
        .await?;
        if let Some(idem) = idem {
            remember(&mut tx, idem, &outcome.stored()).await?;
        }
        // Last but the audit entry: the partnership rows stay locked only until commit.
        bump_versions(&mut tx, &touched.0, &touched.1).await?;
        audit::append_postgres(&mut tx, ctx, write_id, now, written_keys).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub(super) async fn list_records_impl(
        &self,
        filter: &RecordFilter,
        page: PageRequest,
    ) -> Result<Vec<StoredRecord>> {
        let (sql, binds) = listing::list_records(filter, &page);
        let rows = listing::bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredRecord {
                    key: RecordKey::from_stored(row.try_get(0)?),
                    record: codec::decode(&row.try_get::<Vec<u8>, _>(1)?)?,
                    revision: row.try_get(2)?,
                    update_time: Timestamp(row.try_get(3)?),
                })
            })
            .collect()
    }

    pub(super) async fn list_record_revisions_impl(
        &self,
        key: &RecordKey,
        page: PageRequest,
    ) -> Result<Vec<RecordRevision>> {
        let after: i64 = page.after.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
        let rows = sqlx::query(
            "SELECT h.revision, h.request_id, h.commit_time, h.content, h.previous, a.client_id, a.agency FROM ( \
               SELECT revision, request_id, commit_time, content, write_id, \
                      LAG(content) OVER (ORDER BY revision) AS previous \
               FROM record_revisions WHERE record_id = (SELECT id FROM records WHERE key = $1)) AS h \
             LEFT JOIN audit_log a ON a.write_id = h.write_id \
             WHERE h.revision > $2 ORDER BY h.revision LIMIT $3",
        )
        .bind(key.as_str())
        .bind(after)
        .bind(i64::from(page.limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(|row| rows::revision(key, row)).collect()
    }

    pub(super) async fn report_data_impl(
        &self,
        partnerships: &[Id],
        from: Date,
        to: Date,
    ) -> Result<Vec<ReportData>> {
        let ids: Vec<&str> = partnerships.iter().map(Id::as_str).collect();
        // One snapshot for memberships and records.
        let mut conn = self.conn().await?;
        let mut tx =
            sqlx::Connection::begin_with(&mut *conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
        // The rows a report reads are few and in memory: index lookups are as cheap as
        // sequential pages, and this query should not take the second core from the
        // service. With PostgreSQL's defaults (random_page_cost 4, parallel workers) a
        // 100-partnership export chunk hashed the whole revisions table: 204 ms against
        // 37 ms this way, at 1M records (BENCHMARKS.md).
        sqlx::raw_sql("SET LOCAL random_page_cost = 1.1; SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await?;
        let memberships = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE partnership_id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::membership)
        .collect::<Result<Vec<_>>>()?;
        let events_from = from.first_of_month_minus(24).unwrap_or(Date::MIN).to_days();
        // Events are found by agency: the key range of their kind lets each member's
        // events be one range of records_by_agency_key. Without it the planner read
        // every agency's events through the kind column (18 of 19 ms of a report's
        // query at 1M records).
        let (events_low, events_high) = RecordKind::RestructuringEvent.key_range();
        let rows = sqlx::query(
            "SELECT v.content FROM records r \
               JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
               WHERE r.partnership_id = ANY($1) AND r.kind IN (1, 2, 3, 4, 5, 9) AND r.span_end >= $2 AND r.span_start <= $3 \
             UNION ALL \
             SELECT v.content FROM records r \
               JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
               WHERE r.partnership_id = ANY($1) AND r.kind IN (6, 7) AND r.span_start <= $3 \
             UNION ALL \
             SELECT v.content FROM records r \
               JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
               WHERE r.key >= $5 AND r.key < $6 AND r.kind = 8 AND r.span_start >= $4 AND r.span_start <= $3 \
                 AND r.reporting_agency IN (SELECT agency_id FROM memberships WHERE partnership_id = ANY($1))",
        )
        .bind(&ids)
        .bind(from.to_days())
        .bind(to.to_days())
        .bind(events_from)
        .bind(&events_low)
        .bind(&events_high)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let records = rows
            .iter()
            .map(|row| codec::decode(&row.try_get::<Vec<u8>, _>(0)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(assemble_report_data(partnerships, memberships, records))
    }
}

/// Writes the batch's keys to `records` and answers each key's row id and revision; a
/// stored key that an agency other than `owner` reported fails the batch with
/// `refused(key)` for the lowest such key.
///
/// Stored keys are locked first, in key order, then the new keys are inserted and the
/// stored ones updated. Each row of an `INSERT ... ON CONFLICT` is a speculative
/// insertion (an index probe, the insert, then its confirmation); with the lock step
/// and a plain INSERT a record costs PostgreSQL 8-14% less, revisions included
/// (`bench/pg-row-costs.sql`: 21.0 against 22.8 us a record; BENCHMARKS.md, under
/// `medium-ingest-postgres-concurrent`). A key that a concurrent batch inserts after the lock step makes the INSERT
/// fail on `records_key_key` once that batch commits; `is_retryable` retries the whole
/// transaction, which then finds the key stored. Keys are ascending in both steps, so
/// two batches never wait on each other's keys in a cycle.
async fn write_records(
    conn: &mut PgConnection,
    keys: &[KeyWrite],
    now: Timestamp,
    owner: Option<&Id>,
    refused: impl Fn(&str) -> Error,
) -> Result<HashMap<String, (i64, i64)>> {
    let names: Vec<&str> = keys.iter().map(|w| w.key.as_str()).collect();
    // One index probe a key, locking in the keys' order. `key = ANY($1)` lets the
    // planner pick a sequential scan of the whole table for a large batch (it did for
    // 10,000 keys of 300,000 rows: 280 ms against 24 ms this way).
    let stored = sqlx::query(
        "SELECT r.key, r.id, r.revision, r.reporting_agency \
         FROM UNNEST($1::text[]) WITH ORDINALITY AS k(key, ord) \
         CROSS JOIN LATERAL (SELECT key, id, revision, reporting_agency FROM records WHERE key = k.key FOR UPDATE) r \
         ORDER BY k.ord",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let mut written = HashMap::with_capacity(keys.len());
    for row in &stored {
        let key: String = row.try_get(0)?;
        let agency: &str = row.try_get(3)?;
        if owner.is_some_and(|o| o.as_str() != agency) {
            // Rows come in key order (the batch's); dropping the transaction keeps
            // nothing of the batch.
            return Err(refused(&key));
        }
        written.insert(key, (row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?));
    }
    let (updates, inserts): (Vec<&KeyWrite>, Vec<&KeyWrite>) =
        keys.iter().partition(|w| written.contains_key(&w.key));
    if !inserts.is_empty() {
        let rows = sqlx::query(
            "INSERT INTO records (key, kind, partnership_id, reporting_agency, span_start, span_end, revision, update_time) \
             SELECT key, kind, partnership_id, reporting_agency, span_start, span_end, writes, $8 \
             FROM UNNEST($1::text[], $2::int2[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[]) \
                  WITH ORDINALITY AS t(key, kind, partnership_id, reporting_agency, span_start, span_end, writes, ord) \
             ORDER BY ord \
             RETURNING key, id, revision",
        )
        .bind(inserts.iter().map(|w| w.key.as_str()).collect::<Vec<_>>())
        .bind(inserts.iter().map(|w| w.kind).collect::<Vec<_>>())
        .bind(inserts.iter().map(|w| w.partnership.as_deref()).collect::<Vec<_>>())
        .bind(inserts.iter().map(|w| w.reporting_agency.as_str()).collect::<Vec<_>>())
        .bind(inserts.iter().map(|w| i64::from(w.span_start)).collect::<Vec<_>>())
        .bind(inserts.iter().map(|w| i64::from(w.span_end)).collect::<Vec<_>>())
        .bind(inserts.iter().map(|w| w.writes).collect::<Vec<_>>())
        .bind(now.0)
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            written
                .insert(row.try_get::<String, _>(0)?, (row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?));
        }
    }
    if !updates.is_empty() {
        // A natural key fixes kind and partnership; the rest follows the last version.
        let mut ids = Vec::with_capacity(updates.len());
        let mut revisions = Vec::with_capacity(updates.len());
        for w in &updates {
            let entry = written
                .get_mut(&w.key)
                .ok_or_else(|| Error::internal(anyhow::anyhow!("stored key {} not found", w.key)))?;
            entry.1 += w.writes;
            ids.push(entry.0);
            revisions.push(entry.1);
        }
        sqlx::query(
            "UPDATE records r SET reporting_agency = t.reporting_agency, span_start = t.span_start, \
                 span_end = t.span_end, revision = t.revision, update_time = $6 \
             FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int8[]) \
                  AS t(id, reporting_agency, span_start, span_end, revision) \
             WHERE r.id = t.id",
        )
        .bind(&ids)
        .bind(updates.iter().map(|w| w.reporting_agency.as_str()).collect::<Vec<_>>())
        .bind(updates.iter().map(|w| i64::from(w.span_start)).collect::<Vec<_>>())
        .bind(updates.iter().map(|w| i64::from(w.span_end)).collect::<Vec<_>>())
        .bind(&revisions)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    }
    Ok(written)
}

/// Loads, inside the write transaction, the stored facts the precondition checks need.
async fn load_facts(conn: &mut PgConnection, query: &FactQuery) -> Result<PreconditionFacts> {
    let mut facts = PreconditionFacts::default();
    for (partnership, agency) in &query.memberships {
        let row = sqlx::query(
            "SELECT role, start_date, end_date FROM memberships WHERE partnership_id = $1 AND agency_id = $2",
        )
        .bind(partnership.as_str())
        .bind(agency.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            facts.memberships.insert((partnership.clone(), agency.clone()), rows::membership_terms(&row, 0)?);
        }
    }
    for (partnership, version) in &query.adoptions {
        let key = format!("{}/{partnership}/{version}", RecordKind::PrinciplesAdoption.snake_name());
        let row = sqlx::query("SELECT span_start FROM records WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            facts.adoptions.insert((partnership.clone(), *version), rows::day_col(&row, 0)?);
        }
    }
    for (partnership, version) in &query.endorsements {
        // The same key range as on SQLite: "C" collation compares bytes.
        let (prefix, upper) = key_range(&format!(
            "{}/{partnership}/{version}/",
            RecordKind::PrinciplesEndorsement.snake_name()
        ));
        let rows =
            sqlx::query("SELECT reporting_agency, span_start FROM records WHERE key >= $1 AND key < $2")
                .bind(&prefix)
                .bind(&upper)
                .fetch_all(&mut *conn)
                .await?;
        let mut endorsements = BTreeMap::new();
        for row in &rows {
            endorsements.insert(id_col(row, 0)?, rows::day_col(row, 1)?);
        }
        facts.endorsements.insert((partnership.clone(), *version), endorsements);
    }
    Ok(facts)
}

/// Bumps the data version of every partnership the batch can change. The rows are
/// locked in id order, and with FOR NO KEY UPDATE, which does not conflict with the
/// key-share locks that inserting rows referencing them takes (a plain FOR UPDATE
/// does: two writers into one partnership each held a key share and waited for the
/// other's). Concurrent writers of one partnership queue here, briefly, in order.
async fn bump_versions(
    conn: &mut PgConnection,
    partnerships: &BTreeSet<String>,
    event_agencies: &BTreeSet<String>,
) -> Result<()> {
    let partnerships: Vec<&str> = partnerships.iter().map(String::as_str).collect();
    let agencies: Vec<&str> = event_agencies.iter().map(String::as_str).collect();
    sqlx::query(
        "WITH touched AS ( \
           SELECT id FROM partnerships \
           WHERE id = ANY($1) OR id IN (SELECT partnership_id FROM memberships WHERE agency_id = ANY($2)) \
           ORDER BY id FOR NO KEY UPDATE) \
         UPDATE partnerships p SET data_version = data_version + 1 FROM touched WHERE p.id = touched.id",
    )
    .bind(&partnerships)
    .bind(&agencies)
    .execute(&mut *conn)
    .await
    .map_err(Error::from)?;
    Ok(())
}
