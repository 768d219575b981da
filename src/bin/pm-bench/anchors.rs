//! Anchors: the same work done by the fastest direct path, measured in the same run.
//!
//! - SQLite ingest: the service's own schema and indexes (its migrations, WAL,
//!   `synchronous=FULL`, foreign keys on), the same rows (records, their revisions
//!   with the same encoded contents, one request-log row per batch), written through
//!   rusqlite with prepared statements reused inside one transaction per batch.
//! - PostgreSQL: see `pg.rs`.
//! - Export: one plain `SELECT` of every record row the period's reports read, over
//!   rusqlite, streamed and discarded.

use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use partnership_metrics::{
    cli::synth::Synth,
    domain::{
        Date, Id, Period,
        check::{Known, check_records},
        records::Record,
    },
    grpc::records::input_from_pb,
    pb,
    storage::codec,
};

/// The rows one record becomes in the service's schema.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub kind: i16,
    pub partnership: Option<String>,
    pub agency: String,
    /// Days since 1970-01-01.
    pub span_start: i32,
    pub span_end: i32,
    pub content: Vec<u8>,
}

/// The registry rows of a data set.
#[derive(Debug, Default)]
pub struct Registry {
    pub agencies: Vec<(String, String, String)>,
    pub partnerships: Vec<(String, String, String)>,
    /// partnership, agency, role, start, end.
    pub memberships: Vec<(String, String, String, String, Option<String>)>,
}

pub fn registry(synth: &Synth) -> Registry {
    let sector = |v: i32| {
        pb::Sector::try_from(v)
            .map(|s| s.as_str_name().trim_start_matches("SECTOR_").to_string())
            .unwrap_or_default()
    };
    Registry {
        agencies: synth
            .agency_requests()
            .map(|r| {
                let a = r.agency.unwrap_or_default();
                (r.agency_id, a.display_name, sector(a.sector))
            })
            .collect(),
        partnerships: synth
            .partnership_requests()
            .map(|r| {
                let p = r.partnership.unwrap_or_default();
                (r.partnership_id, p.display_name, p.purpose)
            })
            .collect(),
        memberships: synth
            .membership_requests()
            .map(|r| {
                let m = r.membership.unwrap_or_default();
                let role = if m.role == pb::Role::Lead as i32 { "LEAD" } else { "MEMBER" };
                let end = (!m.end_date.is_empty()).then_some(m.end_date);
                (
                    r.parent.trim_start_matches("partnerships/").to_string(),
                    m.agency,
                    role.to_string(),
                    m.start_date,
                    end,
                )
            })
            .collect(),
    }
}

/// The rows of the data set's first `n` records, computed before any timing.
pub fn rows(synth: &Synth, registry: &Registry, n: usize) -> anyhow::Result<Vec<Row>> {
    let known = Known {
        agencies: registry.agencies.iter().map(|a| Id::parse(&a.0)).collect::<Result<HashSet<_>, _>>()?,
        partnerships: registry
            .partnerships
            .iter()
            .map(|p| Id::parse(&p.0))
            .collect::<Result<HashSet<_>, _>>()?,
    };
    let inputs: Vec<_> = synth.records().take(n).map(input_from_pb).collect();
    let checked = check_records(inputs, &known);
    anyhow::ensure!(
        checked.violations.is_empty(),
        "synthetic records failed their checks: {:?}",
        &checked.violations[..1]
    );
    checked
        .passed
        .iter()
        .map(|(_, r): &(usize, Record)| {
            let (start, end) = r.span();
            Ok(Row {
                key: r.key().to_string(),
                kind: r.kind().code(),
                partnership: r.partnership().map(Id::to_string),
                agency: r.reporting_agency().to_string(),
                span_start: start.to_days(),
                span_end: end.to_days(),
                content: codec::encode(r).map_err(|e| anyhow::anyhow!("{e}"))?,
            })
        })
        .collect()
}

const SQLITE_MIGRATIONS: [&str; 2] = [
    include_str!("../../../migrations/sqlite/0001_registry.sql"),
    include_str!("../../../migrations/sqlite/0002_records.sql"),
];

fn sqlite_open(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Writes the rows into a fresh database at `path`, `batch` rows per transaction;
/// returns the time spent writing records (the registry is loaded first, untimed).
pub fn sqlite_ingest(
    path: &Path,
    registry: &Registry,
    rows: &[Row],
    batch: usize,
) -> anyhow::Result<Duration> {
    let mut conn = sqlite_open(path)?;
    for m in SQLITE_MIGRATIONS {
        conn.execute_batch(m).context("applying the service's migrations")?;
    }
    {
        let tx = conn.transaction()?;
        for (id, name, sector) in &registry.agencies {
            tx.execute("INSERT INTO agencies VALUES (?1, ?2, ?3, 0)", (id, name, sector))
                .context("agencies")?;
        }
        for (id, name, purpose) in &registry.partnerships {
            tx.execute(
                "INSERT INTO partnerships (id, display_name, purpose, create_time) VALUES (?1, ?2, ?3, 0)",
                (id, name, purpose),
            )?;
        }
        for (p, a, role, start, end) in &registry.memberships {
            tx.execute(
                "INSERT INTO memberships VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)",
                (p, a, role, start, end),
            )?;
        }
        tx.commit()?;
    }
    let started = Instant::now();
    for (b, chunk) in rows.chunks(batch).enumerate() {
        let request_id = format!("anchor-{b}");
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut record = tx.prepare_cached(
                "INSERT INTO records (key, kind, partnership_id, reporting_agency, span_start, span_end, revision, update_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
            )
            .context("records statement")?;
            let mut revision = tx
                .prepare_cached(
                    "INSERT INTO record_revisions (record_id, revision, request_id, commit_time, content) \
                     VALUES (?1, 1, ?2, ?3, ?4)",
                )
                .context("revisions statement")?;
            for r in chunk {
                record
                    .execute((&r.key, r.kind, &r.partnership, &r.agency, r.span_start, r.span_end, 0i64))
                    .context("record")?;
                let id = tx.last_insert_rowid();
                revision.execute((id, &request_id, 0i64, &r.content)).context("revision")?;
            }
            tx.execute(
                "INSERT INTO request_log VALUES (?1, 'SubmitRecords', x'00', '{}', 0)",
                [&request_id],
            )?;
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// Streams every record row the reports of `period` read (each partnership's records
/// reaching into the period, its adoptions and endorsements up to its end, and its
/// members' restructuring events of the two windows), touching each content and
/// discarding it. Returns the rows and the time.
pub fn sqlite_scan(path: &Path, period: Period) -> anyhow::Result<(u64, Duration)> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (from, to) = (period.start(), period.end());
    let events_from = from.first_of_month_minus(24).unwrap_or(Date::MIN).to_days();
    let started = Instant::now();
    let mut stmt = conn.prepare(
        "SELECT v.content FROM records r JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision \
         WHERE (r.kind IN (1, 2, 3, 4, 5, 9) AND r.span_end >= ?1 AND r.span_start <= ?2) \
            OR (r.kind IN (6, 7) AND r.span_start <= ?2) \
            OR (r.kind = 8 AND r.span_start >= ?3 AND r.span_start <= ?2 \
                AND r.reporting_agency IN (SELECT agency_id FROM memberships))",
    )?;
    let mut rows = stmt.query((from.to_days(), to.to_days(), events_from))?;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        bytes += row.get_ref(0)?.as_blob().context("content is a blob")?.len();
        n += 1;
    }
    std::hint::black_box(bytes);
    Ok((n, started.elapsed()))
}
