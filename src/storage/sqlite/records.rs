//! Records on SQLite. Batches and report reads take the direct path (`direct`);
//! listings, the audit trail and id lookups go through sqlx.

use sqlx::{AssertSqlSafe, Row};

use super::{SqliteStore, direct, replay};
use crate::{
    domain::{
        Date, Id, Idempotency, Timestamp,
        audit::WriteContext,
        check::{CheckedBatch, Known, References},
        records::RecordKey,
        submission::{RecordFilter, RecordRevision, ReportData, StoredRecord, SubmitOutcome},
    },
    error::{Error, Result},
    storage::{
        PageRequest, codec, listing,
        rows::{self, id_col},
    },
};

/// Ids per `IN (...)` lookup, far below SQLite's 32,766 bound parameters.
const IDS_PER_STATEMENT: usize = 500;

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
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!("SELECT id FROM {table} WHERE id IN ({})", in_list(chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&mut *self.conn().await?).await? {
                found.push(id_col(&row, 0)?);
            }
        }
        Ok(found)
    }

    pub(super) async fn replay_submission_impl(&self, idem: &Idempotency) -> Result<Option<SubmitOutcome>> {
        let mut conn = self.conn().await?;
        replay(&mut conn, idem).await
    }

    pub(super) async fn submit_records_impl(
        &self,
        batch: CheckedBatch,
        ctx: WriteContext,
    ) -> Result<SubmitOutcome> {
        let writer = self.writer.clone();
        let (outcome, bumped) = tokio::task::spawn_blocking(move || writer.submit(&batch, &ctx))
            .await
            .map_err(|e| Error::internal(anyhow::anyhow!("submission task: {e}")))??;
        // Committed: the new versions are visible before the batch is acknowledged.
        self.set_versions(&bumped);
        Ok(outcome)
    }

    pub(super) async fn list_records_impl(
        &self,
        filter: &RecordFilter,
        page: PageRequest,
    ) -> Result<Vec<StoredRecord>> {
        let (sql, binds) = listing::list_records(filter, &page);
        let rows = listing::bind_all(sqlx::query(AssertSqlSafe(sql)), binds)
            .fetch_all(&mut *self.conn().await?)
            .await?;
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

    pub(super) async fn record_reporting_agency_impl(&self, key: &RecordKey) -> Result<Option<Id>> {
        let row = sqlx::query("SELECT reporting_agency FROM records WHERE key = ?")
            .bind(key.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.map(|r| id_col(&r, 0)).transpose()
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
               FROM record_revisions WHERE record_id = (SELECT id FROM records WHERE key = ?)) AS h \
             LEFT JOIN audit_log a ON a.write_id = h.write_id \
             WHERE h.revision > ? ORDER BY h.revision LIMIT ?",
        )
        .bind(key.as_str())
        .bind(after)
        .bind(i64::from(page.limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(|row| rows::revision(key, row)).collect()
    }
}

impl SqliteStore {
    pub(super) async fn report_data_impl(
        &self,
        partnerships: &[Id],
        from: Date,
        to: Date,
    ) -> Result<Vec<ReportData>> {
        let readers = self.readers.clone();
        let ids: Vec<Id> = partnerships.to_vec();
        tokio::task::spawn_blocking(move || {
            readers.with(|conn| direct::read_report_data(conn, &ids, from, to))
        })
        .await
        .map_err(|e| Error::internal(anyhow::anyhow!("report read task: {e}")))?
    }
}
