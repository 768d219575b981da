//! The audit log in the database: appending an entry inside a write's transaction
//! (the same SQL on every backend), and reading the chain back for `audit verify`.
//!
//! An append takes the head row (`audit_head`) with an UPDATE, which on PostgreSQL
//! holds its lock until the transaction ends: writers append one at a time, in
//! commit order, so the chain has no gaps and no forks. Writers do it last, after
//! every other lock they take, so the wait is only for the other's commit.

use sqlx::{PgConnection, Row, SqliteConnection};

use crate::{
    domain::{
        Timestamp,
        audit::{AuditEntry, ChainBreak, ChainSummary, ChainVerifier, WriteContext},
    },
    error::{Error, Result},
};

/// Advances the head; returns the new entry's number and the previous hash.
const ADVANCE_HEAD: &str = "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash";
const SET_HEAD_HASH: &str = "UPDATE audit_head SET hash = $1 WHERE id = 1";
const INSERT_ENTRY: &str = "INSERT INTO audit_log (seq, write_id, time, client_id, agency, method, request_id, keys, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const READ_HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
const READ_ENTRIES: &str = "SELECT seq, time, client_id, agency, method, request_id, keys, prev_hash, hash \
     FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2";

/// The SQLite write id of a write: the number its entry will get. SQLite has one
/// writer at a time, so nothing can take that number first.
pub(crate) const SQLITE_NEXT_WRITE_ID: &str = "SELECT seq + 1 FROM audit_head WHERE id = 1";
/// The PostgreSQL write id: from a sequence, since entries are numbered only at commit.
pub(crate) const POSTGRES_NEXT_WRITE_ID: &str = "SELECT nextval('audit_write_ids')";

fn hash_of(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| Error::internal(anyhow::anyhow!("a stored audit hash is not 32 bytes")))
}

macro_rules! append_with_sqlx {
    ($name:ident, $conn:ty) => {
        /// Appends the write's entry to the chain, in the write's transaction.
        pub(crate) async fn $name(
            conn: &mut $conn,
            ctx: &WriteContext,
            write_id: i64,
            time: Timestamp,
            keys: Vec<String>,
        ) -> Result<()> {
            let row = sqlx::query(ADVANCE_HEAD).fetch_one(&mut *conn).await?;
            let entry = ctx.entry(row.try_get(0)?, time, keys, hash_of(row.try_get(1)?)?);
            sqlx::query(INSERT_ENTRY)
                .bind(entry.seq)
                .bind(write_id)
                .bind(entry.time.0)
                .bind(&entry.client_id)
                .bind(&entry.agency)
                .bind(&entry.method)
                .bind(&entry.request_id)
                .bind(entry.keys_text())
                .bind(&entry.prev_hash[..])
                .bind(&entry.hash[..])
                .execute(&mut *conn)
                .await?;
            sqlx::query(SET_HEAD_HASH).bind(&entry.hash[..]).execute(&mut *conn).await?;
            Ok(())
        }
    };
}

append_with_sqlx!(append_sqlite, SqliteConnection);
append_with_sqlx!(append_postgres, PgConnection);

/// [`append_sqlite`] on the SQLite store's direct (rusqlite) write path.
pub(crate) fn append_rusqlite(
    tx: &rusqlite::Transaction<'_>,
    ctx: &WriteContext,
    write_id: i64,
    time: Timestamp,
    keys: Vec<String>,
) -> Result<()> {
    let db = |e: rusqlite::Error| Error::internal(anyhow::anyhow!("SQLite: appending to the audit log: {e}"));
    let (seq, prev): (i64, Vec<u8>) =
        tx.query_row(ADVANCE_HEAD, [], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
    let entry = ctx.entry(seq, time, keys, hash_of(prev)?);
    tx.prepare_cached(INSERT_ENTRY)
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                entry.seq,
                write_id,
                entry.time.0,
                entry.client_id,
                entry.agency,
                entry.method,
                entry.request_id,
                entry.keys_text(),
                &entry.prev_hash[..],
                &entry.hash[..],
            ])
        })
        .map_err(db)?;
    tx.execute(SET_HEAD_HASH, [&entry.hash[..]]).map_err(db)?;
    Ok(())
}

/// Entries read per query while verifying.
const VERIFY_PAGE: i64 = 10_000;

macro_rules! verify_with_sqlx {
    ($name:ident, $conn:ty) => {
        /// Recomputes the whole chain, a page at a time, inside one snapshot.
        pub(crate) async fn $name(conn: &mut $conn) -> Result<std::result::Result<ChainSummary, ChainBreak>> {
            let head = sqlx::query(READ_HEAD).fetch_one(&mut *conn).await?;
            let (head_seq, head_hash): (i64, [u8; 32]) = (head.try_get(0)?, hash_of(head.try_get(1)?)?);
            let mut chain = ChainVerifier::default();
            let mut after = 0i64;
            loop {
                let rows =
                    sqlx::query(READ_ENTRIES).bind(after).bind(VERIFY_PAGE).fetch_all(&mut *conn).await?;
                let done = (rows.len() as i64) < VERIFY_PAGE;
                for row in rows {
                    let keys: String = row.try_get(6)?;
                    let entry = AuditEntry {
                        seq: row.try_get(0)?,
                        time: Timestamp(row.try_get(1)?),
                        client_id: row.try_get(2)?,
                        agency: row.try_get(3)?,
                        method: row.try_get(4)?,
                        request_id: row.try_get(5)?,
                        keys: AuditEntry::keys_from_text(&keys),
                        prev_hash: hash_of(row.try_get(7)?)?,
                        hash: hash_of(row.try_get(8)?)?,
                    };
                    after = entry.seq;
                    if let Err(broken) = chain.push(&entry) {
                        return Ok(Err(broken));
                    }
                }
                if done {
                    break;
                }
            }
            Ok(chain.finish(head_seq, head_hash))
        }
    };
}

verify_with_sqlx!(verify_sqlite, SqliteConnection);
verify_with_sqlx!(verify_postgres, PgConnection);
