//! Partnerships' data versions, read for every report request (a cached report is
//! served only while its partnership's version is unchanged, and on PostgreSQL any
//! replica may have written). One query per request made the round trip and the
//! database's per-statement work the bound of cached reads (7.7k req/s at 64 streams
//! beside 76k for Health), so concurrent requests share queries: a request waits
//! for the next query to *start* after it arrived, never for one already running,
//! so it sees every write committed before it asked, as with a query of its own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::{
    domain::Id,
    error::{Error, Result},
};

type Versions = Arc<HashMap<String, i64>>;
/// What a query's waiters receive: the versions, or what failed (an `Error` is
/// not `Clone`; each waiter gets one of its own).
type Answer = std::result::Result<Versions, Arc<Error>>;

#[derive(Debug, Default)]
struct Queue {
    /// Whether a driver task is running queries.
    driving: bool,
    waiting: Vec<(Vec<String>, oneshot::Sender<Answer>)>,
    /// The driver's own connection, kept between drives (a pool acquire per query
    /// cost as much as the query); dropped on an error and made again.
    conn: Option<PgConnection>,
}

/// Coalesced `SELECT id, data_version FROM partnerships` reads.
#[derive(Debug, Clone)]
pub(super) struct VersionReads {
    pool: PgPool,
    queue: Arc<Mutex<Queue>>,
}

impl VersionReads {
    pub fn new(pool: PgPool) -> Self {
        VersionReads { pool, queue: Arc::default() }
    }

    pub async fn read(&self, partnerships: &[Id]) -> Result<Vec<Option<i64>>> {
        let ids: Vec<String> = partnerships.iter().map(|p| p.as_str().to_string()).collect();
        let (tx, rx) = oneshot::channel();
        let start_driver = {
            let mut q = self.queue.lock().map_err(|_| poisoned())?;
            q.waiting.push((ids, tx));
            !std::mem::replace(&mut q.driving, true)
        };
        if start_driver {
            let me = self.clone();
            tokio::spawn(async move { me.drive().await }.in_current_span());
        }
        let versions = match rx.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e.duplicate()),
            Err(_) => return Err(Error::internal(anyhow::anyhow!("the data-version reader stopped"))),
        };
        Ok(partnerships.iter().map(|p| versions.get(p.as_str()).copied()).collect())
    }

    /// Runs queries until no request waits: each takes every request waiting when it
    /// starts.
    async fn drive(self) {
        let mut conn = None;
        loop {
            let batch = match self.queue.lock() {
                Ok(mut q) if q.waiting.is_empty() => {
                    q.driving = false;
                    if conn.is_some() {
                        q.conn = conn;
                    }
                    return;
                }
                Ok(mut q) => {
                    if conn.is_none() {
                        conn = q.conn.take();
                    }
                    std::mem::take(&mut q.waiting)
                }
                // A panic while the lock was held; the senders drop and waiters get
                // an internal error.
                Err(_) => return,
            };
            let mut ids: Vec<&str> =
                batch.iter().flat_map(|(ids, _)| ids.iter().map(String::as_str)).collect();
            ids.sort_unstable();
            ids.dedup();
            let answer = match self.query(&mut conn, &ids).await {
                Ok(v) => Ok(Arc::new(v)),
                Err(e) => {
                    conn = None;
                    Err(Arc::new(e))
                }
            };
            for (_, tx) in batch {
                // A waiter that went away (its call was cancelled) needs no answer.
                let _ = tx.send(answer.clone());
            }
        }
    }

    async fn query(&self, conn: &mut Option<PgConnection>, ids: &[&str]) -> Result<HashMap<String, i64>> {
        let c = match conn {
            Some(c) => c,
            None => {
                conn.insert(PgConnection::connect_with(&self.pool.connect_options()).await.map_err(|e| {
                    Error::unavailable(format!(
                        "connecting to PostgreSQL: {}",
                        super::redact_secrets(&e.to_string())
                    ))
                })?)
            }
        };
        Ok(sqlx::query_as("SELECT id, data_version FROM partnerships WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(c)
            .await?
            .into_iter()
            .collect())
    }
}

fn poisoned() -> Error {
    Error::internal(anyhow::anyhow!("the data-version queue's lock is poisoned"))
}
