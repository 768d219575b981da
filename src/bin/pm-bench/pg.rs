//! The anchors of the PostgreSQL figures, each the fastest direct way to do the same
//! work, measured in the same run:
//!
//! - ingest: COPY of the same records' keys and encoded contents into a table that
//!   holds only the natural key as primary key plus the content (the least any design
//!   needs to find a record's earlier revision), one transaction per batch, text and
//!   binary format both tried and the faster kept, the COPY payloads built before the
//!   clock starts; with several streams, one connection per stream.
//! - export: one plain `SELECT` of exactly the record rows the period's reports read,
//!   streamed over one connection and discarded.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use partnership_metrics::domain::{Date, Period};
use sqlx::{Connection, Row as _};

use crate::anchors::Row;

/// The COPY formats tried for the ingest anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Binary,
}

impl CopyFormat {
    pub fn name(self) -> &'static str {
        match self {
            CopyFormat::Text => "text",
            CopyFormat::Binary => "binary",
        }
    }
}

/// One COPY payload per batch.
fn payloads(rows: &[Row], batch: usize, format: CopyFormat) -> Vec<Vec<u8>> {
    rows.chunks(batch)
        .map(|chunk| match format {
            CopyFormat::Text => {
                use std::fmt::Write;
                let mut out = String::with_capacity(chunk.len() * 320);
                for r in chunk {
                    // Keys are paths of ids, periods and dates: nothing COPY escapes.
                    out.push_str(&r.key);
                    out.push_str("\t\\\\x");
                    for byte in &r.content {
                        let _ = write!(out, "{byte:02x}");
                    }
                    out.push('\n');
                }
                out.into_bytes()
            }
            CopyFormat::Binary => {
                let mut out = Vec::with_capacity(chunk.len() * 200 + 32);
                out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
                out.extend_from_slice(&0u32.to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes());
                for r in chunk {
                    out.extend_from_slice(&2i16.to_be_bytes());
                    for field in [r.key.as_bytes(), r.content.as_slice()] {
                        out.extend_from_slice(&(field.len() as i32).to_be_bytes());
                        out.extend_from_slice(field);
                    }
                }
                out.extend_from_slice(&(-1i16).to_be_bytes());
                out
            }
        })
        .collect()
}

/// COPYs `rows` into a fresh minimal table of the database `url` names, `batch` rows
/// per transaction, batch `i` on stream `i mod streams`; returns the time and the
/// format of the faster of text and binary, with the CPU seconds PostgreSQL spent on it.
pub async fn minimal_copy(
    url: &str,
    rows: &[Row],
    batch: usize,
    streams: usize,
) -> anyhow::Result<(Duration, CopyFormat, f64)> {
    let mut best: Option<(Duration, CopyFormat, f64)> = None;
    for format in [CopyFormat::Text, CopyFormat::Binary] {
        let mut admin = sqlx::PgConnection::connect(url).await?;
        sqlx::query("DROP TABLE IF EXISTS anchor_records").execute(&mut admin).await?;
        sqlx::query(
            "CREATE TABLE anchor_records (key TEXT COLLATE \"C\" PRIMARY KEY, content BYTEA NOT NULL)",
        )
        .execute(&mut admin)
        .await?;
        let mut per_stream: Vec<Vec<Vec<u8>>> = (0..streams).map(|_| Vec::new()).collect();
        for (i, p) in payloads(rows, batch, format).into_iter().enumerate() {
            per_stream[i % streams].push(p);
        }
        let mut conns = Vec::with_capacity(streams);
        for _ in 0..streams {
            conns.push(sqlx::PgConnection::connect(url).await?);
        }
        let sql = match format {
            CopyFormat::Text => "COPY anchor_records (key, content) FROM STDIN",
            CopyFormat::Binary => "COPY anchor_records (key, content) FROM STDIN (FORMAT binary)",
        };
        let (started, cpu0) = (Instant::now(), crate::server::postgres_cpu_seconds());
        let tasks: Vec<_> = conns
            .into_iter()
            .zip(per_stream)
            .map(|(mut conn, batches)| {
                tokio::spawn(async move {
                    for payload in batches {
                        let mut tx = conn.begin().await?;
                        let mut copy = tx.copy_in_raw(sql).await?;
                        copy.send(payload).await?;
                        copy.finish().await?;
                        tx.commit().await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let elapsed = started.elapsed();
        let cpu = crate::server::postgres_cpu_seconds() - cpu0;
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM anchor_records").fetch_one(&mut admin).await?;
        anyhow::ensure!(n as usize == rows.len(), "the COPY anchor stored {n} of {} rows", rows.len());
        sqlx::query("DROP TABLE anchor_records").execute(&mut admin).await?;
        if best.is_none_or(|(t, _, _)| elapsed < t) {
            best = Some((elapsed, format, cpu));
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no COPY format was tried"))
}

/// The record rows the reports of `period` read, over every partnership: the same
/// three parts as the service's report query, without the partnership list.
pub const REPORT_ROWS_SQL: &str = "\
    SELECT v.content FROM records r JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
      WHERE r.partnership_id IS NOT NULL AND r.kind IN (1, 2, 3, 4, 5, 9) AND r.span_end >= $1 AND r.span_start <= $2 \
    UNION ALL \
    SELECT v.content FROM records r JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
      WHERE r.partnership_id IS NOT NULL AND r.kind IN (6, 7) AND r.span_start <= $2 \
    UNION ALL \
    SELECT v.content FROM records r JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
      WHERE r.kind = 8 AND r.span_start >= $3 AND r.span_start <= $2 \
        AND r.reporting_agency IN (SELECT agency_id FROM memberships)";

/// Streams every record row the reports of `period` read, touching each content and
/// discarding it; returns the rows and the time.
pub async fn scan(url: &str, period: Period) -> anyhow::Result<(u64, Duration)> {
    // PostgreSQL's default costs (a parallel hash join over the revisions) and the
    // service's report-read settings (index lookups, no parallel workers) are both
    // tried; the faster is the anchor.
    let mut best: Option<(u64, Duration)> = None;
    for settings in ["RESET ALL", "SET random_page_cost = 1.1; SET max_parallel_workers_per_gather = 0"] {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(settings)).execute(&mut conn).await?;
        let (n, t) = scan_once(&mut conn, period).await?;
        if best.is_none_or(|(_, b)| t < b) {
            best = Some((n, t));
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no scan was run"))
}

async fn scan_once(conn: &mut sqlx::PgConnection, period: Period) -> anyhow::Result<(u64, Duration)> {
    let (from, to) = (period.start(), period.end());
    let events_from = from.first_of_month_minus(24).unwrap_or(Date::MIN).to_days();
    let started = Instant::now();
    let mut rows = sqlx::query(REPORT_ROWS_SQL)
        .bind(i64::from(from.to_days()))
        .bind(i64::from(to.to_days()))
        .bind(i64::from(events_from))
        .fetch(&mut *conn);
    let (mut n, mut bytes) = (0u64, 0usize);
    while let Some(row) = rows.try_next().await? {
        let content: &[u8] = row.try_get(0)?;
        bytes += content.len();
        n += 1;
    }
    std::hint::black_box(bytes);
    Ok((n, started.elapsed()))
}
