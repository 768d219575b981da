//! Records on SQLite: batched writes with multi-row statements (a statement per
//! record would cap ingest near 25k records/s through sqlx's worker thread), the audit
//! trail, listings.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AssertSqlSafe, Row, SqliteConnection, sqlite::SqliteRow};

use super::{SqliteStore, remember, replay};
use crate::{
    domain::{
        Date, Id, Idempotency, Timestamp,
        check::{CheckedBatch, FactQuery, Known, PreconditionFacts, References},
        records::{RecordKey, RecordKind},
        submission::{RecordFilter, RecordRevision, ReportData, StoredRecord, SubmitOutcome},
    },
    error::Result,
    storage::{
        PageRequest,
        batch::PreparedBatch,
        codec,
        rows::{self, corrupt, date_col, id_col, membership_columns},
    },
};

/// Rows per multi-row statement: large enough to amortise the per-statement cost,
/// small enough to stay far below SQLite's 32,766 bound parameters (11 per row).
const ROWS_PER_STATEMENT: usize = 500;

/// `(?, ?, ...), (?, ?, ...)` for `rows` rows of `cols` columns.
fn values_list(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SqliteStore {
    pub(super) async fn known_ids_impl(&self, refs: &References) -> Result<Known> {
        let (mut known, agencies, partnerships) = self.known.split(refs);
        let found_agencies = self.existing_ids("agencies", &agencies).await?;
        let found_partnerships = self.existing_ids("partnerships", &partnerships).await?;
        self.known.learn(&mut known, found_agencies, found_partnerships);
        Ok(known)
    }

    async fn existing_ids(&self, table: &'static str, ids: &[Id]) -> Result<Vec<Id>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!("SELECT id FROM {table} WHERE id IN ({})", in_list(chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push(id_col(&row, 0)?);
            }
        }
        Ok(found)
    }

    pub(super) async fn replay_submission_impl(&self, idem: &Idempotency) -> Result<Option<SubmitOutcome>> {
        let mut conn = self.pool.acquire().await?;
        replay(&mut conn, idem).await
    }

    pub(super) async fn submit_records_impl(
        &self,
        batch: CheckedBatch,
        idem: Option<Idempotency>,
    ) -> Result<SubmitOutcome> {
        let query = batch.fact_query();
        let mut tx = self.begin_write().await?;
        if let Some(idem) = &idem
            && let Some(done) = replay(&mut tx, idem).await?
        {
            return Ok(done);
        }
        let facts =
            if query.is_empty() { PreconditionFacts::default() } else { load_facts(&mut tx, &query).await? };
        // A rejection drops the transaction unused: nothing is stored.
        let records = batch.apply_preconditions(&facts)?;
        let prepared = PreparedBatch::new(&records)?;
        let now = Timestamp::now();
        let request_id = idem.as_ref().map(|i| i.request_id.as_str().to_string());

        let mut written = HashMap::with_capacity(prepared.keys.len());
        for chunk in prepared.keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO records (key, kind, partnership_id, reporting_agency, span_start, span_end, \
                 revision, update_time) VALUES {} \
                 ON CONFLICT (key) DO UPDATE SET reporting_agency = excluded.reporting_agency, \
                 span_start = excluded.span_start, span_end = excluded.span_end, \
                 revision = records.revision + excluded.revision, update_time = excluded.update_time \
                 RETURNING key, id, revision",
                values_list(chunk.len(), 8)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for w in chunk {
                q = q
                    .bind(&w.key)
                    .bind(w.kind)
                    .bind(&w.partnership)
                    .bind(&w.reporting_agency)
                    .bind(&w.span_start)
                    .bind(&w.span_end)
                    .bind(w.writes)
                    .bind(now.0);
            }
            for row in q.fetch_all(&mut *tx).await? {
                written.insert(
                    row.try_get::<String, _>(0)?,
                    (row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?),
                );
            }
        }
        let (outcome, revisions) = prepared.finish(&written, now)?;
        for chunk in revisions.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO record_revisions (record_id, revision, reporting_agency, request_id, commit_time, content) \
                 VALUES {}",
                values_list(chunk.len(), 6)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.record_id)
                    .bind(r.revision)
                    .bind(&r.reporting_agency)
                    .bind(&request_id)
                    .bind(now.0)
                    .bind(&r.content);
            }
            q.execute(&mut *tx).await?;
        }
        bump_versions(&mut tx, &prepared).await?;
        if let Some(idem) = &idem {
            remember(&mut tx, idem, &outcome).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    pub(super) async fn list_records_impl(
        &self,
        filter: &RecordFilter,
        page: PageRequest,
    ) -> Result<Vec<StoredRecord>> {
        let mut sql = String::from(
            "SELECT r.key, v.content, r.revision, r.update_time FROM records r \
             JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision WHERE r.key > ?",
        );
        if filter.partnership.is_some() {
            sql.push_str(" AND r.partnership_id = ?");
        }
        if filter.kind.is_some() {
            sql.push_str(" AND r.kind = ?");
        }
        if filter.agency.is_some() {
            sql.push_str(" AND r.reporting_agency = ?");
        }
        if filter.from.is_some() || filter.to.is_some() {
            // Contracts overlap the range; everything else lies inside it.
            sql.push_str(
                " AND ((r.kind = 2 AND r.span_start <= ? AND r.span_end >= ?) \
                 OR (r.kind <> 2 AND r.span_start >= ? AND r.span_end <= ?))",
            );
        }
        sql.push_str(" ORDER BY r.key LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(page.after.unwrap_or_default());
        if let Some(p) = &filter.partnership {
            q = q.bind(p.as_str());
        }
        if let Some(k) = filter.kind {
            q = q.bind(k.code());
        }
        if let Some(a) = &filter.agency {
            q = q.bind(a.as_str());
        }
        if filter.from.is_some() || filter.to.is_some() {
            let from = filter.from.unwrap_or(Date::MIN).to_string();
            let to = filter.to.unwrap_or(Date::MAX).to_string();
            q = q.bind(to.clone()).bind(from.clone()).bind(from).bind(to);
        }
        let rows = q.bind(i64::from(page.limit)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let content: Vec<u8> = row.try_get(1)?;
                Ok(StoredRecord {
                    key: RecordKey::from_stored(row.try_get(0)?),
                    record: codec::decode(&content)?,
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
            "SELECT revision, reporting_agency, request_id, commit_time, content, previous FROM ( \
               SELECT revision, reporting_agency, request_id, commit_time, content, \
                      LAG(content) OVER (ORDER BY revision) AS previous \
               FROM record_revisions WHERE record_id = (SELECT id FROM records WHERE key = ?)) \
             WHERE revision > ? ORDER BY revision LIMIT ?",
        )
        .bind(key.as_str())
        .bind(after)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| revision_row(key, row)).collect()
    }
}

impl SqliteStore {
    pub(super) async fn report_data_impl(
        &self,
        partnership: &Id,
        from: Date,
        to: Date,
    ) -> Result<Option<ReportData>> {
        // One read transaction: memberships and records from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM partnerships WHERE id = ?")
            .bind(partnership.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let memberships = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE partnership_id = ?"
        ))
        .bind(partnership.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::membership)
        .collect::<Result<Vec<_>>>()?;
        let (from_s, to_s) = (from.to_string(), to.to_string());
        // D6 looks back two windows of 12 calendar months from each period's end.
        let events_from = from.first_of_month_minus(24).unwrap_or(Date::MIN).to_string();
        let rows = sqlx::query(
            "SELECT v.content FROM records r \
               JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
               WHERE r.partnership_id = ?1 AND r.kind IN (1, 2, 3, 4, 5, 9) AND r.span_end >= ?2 AND r.span_start <= ?3 \
             UNION ALL \
             SELECT v.content FROM records r \
               JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
               WHERE r.partnership_id = ?1 AND r.kind IN (6, 7) AND r.span_start <= ?3 \
             UNION ALL \
             SELECT v.content FROM records r \
               JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
               WHERE r.kind = 8 AND r.span_start >= ?4 AND r.span_start <= ?3 \
                 AND r.reporting_agency IN (SELECT agency_id FROM memberships WHERE partnership_id = ?1)",
        )
        .bind(partnership.as_str())
        .bind(&from_s)
        .bind(&to_s)
        .bind(&events_from)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let records = rows
            .iter()
            .map(|row| codec::decode(&row.try_get::<Vec<u8>, _>(0)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ReportData { memberships, records }))
    }
}

fn revision_row(key: &RecordKey, row: &SqliteRow) -> Result<RecordRevision> {
    let content: Vec<u8> = row.try_get(4)?;
    let previous: Option<Vec<u8>> = row.try_get(5)?;
    Ok(RecordRevision {
        key: key.clone(),
        revision: row.try_get(0)?,
        submitting_agency: id_col(row, 1)?,
        request_id: row.try_get(2)?,
        commit_time: Timestamp(row.try_get(3)?),
        record: codec::decode(&content)?,
        previous: previous.as_deref().map(codec::decode).transpose()?,
    })
}

/// Loads, inside the write transaction, the stored facts the precondition checks need.
async fn load_facts(conn: &mut SqliteConnection, query: &FactQuery) -> Result<PreconditionFacts> {
    let mut facts = PreconditionFacts::default();
    for (partnership, agency) in &query.memberships {
        let row = sqlx::query(
            "SELECT role, start_date, end_date FROM memberships WHERE partnership_id = ? AND agency_id = ?",
        )
        .bind(partnership.as_str())
        .bind(agency.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let terms = rows::membership_terms(&row, 0)?;
            facts.memberships.insert((partnership.clone(), agency.clone()), terms);
        }
    }
    for (partnership, version) in &query.adoptions {
        let key = format!("{}/{partnership}/{version}", RecordKind::PrinciplesAdoption.snake_name());
        let row = sqlx::query("SELECT span_start FROM records WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row
            && let Some(date) = date_col(&row, 0)?
        {
            facts.adoptions.insert((partnership.clone(), *version), date);
        }
    }
    for (partnership, version) in &query.endorsements {
        // Every key of the version's endorsements starts with this prefix; the upper
        // bound replaces its final '/' with the next byte, '0'.
        let prefix = format!("{}/{partnership}/{version}/", RecordKind::PrinciplesEndorsement.snake_name());
        let upper = format!("{}0", &prefix[..prefix.len() - 1]);
        let rows = sqlx::query("SELECT reporting_agency, span_start FROM records WHERE key >= ? AND key < ?")
            .bind(&prefix)
            .bind(&upper)
            .fetch_all(&mut *conn)
            .await?;
        let mut endorsements = BTreeMap::new();
        for row in &rows {
            let date = date_col(row, 1)?.ok_or_else(|| corrupt("endorsement date", "NULL"))?;
            endorsements.insert(id_col(row, 0)?, date);
        }
        facts.endorsements.insert((partnership.clone(), *version), endorsements);
    }
    Ok(facts)
}

/// Bumps the data version of every partnership whose reports the batch can change.
async fn bump_versions(conn: &mut SqliteConnection, prepared: &PreparedBatch) -> Result<()> {
    let partnerships: Vec<&String> = prepared.partnerships.iter().collect();
    for chunk in partnerships.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE partnerships SET data_version = data_version + 1 WHERE id IN ({})",
            in_list(chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in chunk {
            q = q.bind(p.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    let agencies: Vec<&String> = prepared.event_agencies.iter().collect();
    for chunk in agencies.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE partnerships SET data_version = data_version + 1 WHERE id IN \
             (SELECT partnership_id FROM memberships WHERE agency_id IN ({}))",
            in_list(chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in chunk {
            q = q.bind(a.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
