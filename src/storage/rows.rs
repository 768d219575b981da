//! Rows to domain values, the same for every backend: both store ids and dates as
//! text, times as 64-bit integers and record contents as bytes.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::codec;
use crate::{
    domain::{
        Date, Id, Timestamp,
        records::RecordKey,
        registry::{Agency, Membership, MembershipTerms, Partnership, Role, Sector},
        submission::RecordRevision,
    },
    error::{Error, Result},
};

/// What a row of any backend must decode for these helpers.
pub(crate) trait AnyRow: Row
where
    usize: ColumnIndex<Self>,
{
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>>;
}

impl<R> AnyRow for R
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }

    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }

    fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        Ok(self.try_get(i)?)
    }
}

pub(crate) fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(anyhow::anyhow!("stored {what} {value:?} is not valid"))
}

// Stored values to domain values, for sqlx rows (below) and the SQLite store's
// rusqlite rows alike.

pub(crate) fn stored_id(s: String) -> Result<Id> {
    Id::parse(&s).map_err(|_| corrupt("id", &s))
}

pub(crate) fn stored_date(s: String) -> Result<Date> {
    Date::parse(&s).map_err(|_| corrupt("date", &s))
}

/// A date stored as days since 1970-01-01.
pub(crate) fn stored_day(days: i64) -> Result<Date> {
    i32::try_from(days).ok().and_then(Date::from_days).ok_or_else(|| corrupt("day", &days.to_string()))
}

pub(crate) fn stored_terms(role: String, start: String, end: Option<String>) -> Result<MembershipTerms> {
    Ok(MembershipTerms {
        role: Role::from_name(&role).ok_or_else(|| corrupt("role", &role))?,
        start_date: stored_date(start)?,
        end_date: end.map(stored_date).transpose()?,
    })
}

pub(crate) fn id_col<R: AnyRow>(row: &R, i: usize) -> Result<Id>
where
    usize: ColumnIndex<R>,
{
    stored_id(row.text(i)?)
}

/// Columns: id, display_name, sector, create_time.
pub(crate) fn agency<R: AnyRow>(row: &R) -> Result<Agency>
where
    usize: ColumnIndex<R>,
{
    let sector = row.text(2)?;
    Ok(Agency {
        id: id_col(row, 0)?,
        display_name: row.text(1)?,
        sector: Sector::from_name(&sector).ok_or_else(|| corrupt("sector", &sector))?,
        create_time: Timestamp(row.int(3)?),
    })
}

/// Columns: id, display_name, purpose, create_time.
pub(crate) fn partnership<R: AnyRow>(row: &R) -> Result<Partnership>
where
    usize: ColumnIndex<R>,
{
    Ok(Partnership {
        id: id_col(row, 0)?,
        display_name: row.text(1)?,
        purpose: row.text(2)?,
        create_time: Timestamp(row.int(3)?),
    })
}

/// The membership columns in the order [`membership`] reads them.
macro_rules! membership_columns {
    () => {
        "partnership_id, agency_id, role, start_date, end_date, create_time, update_time"
    };
}
pub(crate) use membership_columns;

pub(crate) fn membership_terms<R: AnyRow>(row: &R, first: usize) -> Result<MembershipTerms>
where
    usize: ColumnIndex<R>,
{
    stored_terms(row.text(first)?, row.text(first + 1)?, row.opt_text(first + 2)?)
}

pub(crate) fn membership<R: AnyRow>(row: &R) -> Result<Membership>
where
    usize: ColumnIndex<R>,
{
    Ok(Membership {
        partnership: id_col(row, 0)?,
        agency: id_col(row, 1)?,
        terms: membership_terms(row, 2)?,
        create_time: Timestamp(row.int(5)?),
        update_time: Timestamp(row.int(6)?),
    })
}

/// A date stored as days since 1970-01-01.
pub(crate) fn day_col<R: AnyRow>(row: &R, i: usize) -> Result<Date>
where
    usize: ColumnIndex<R>,
{
    stored_day(row.int(i)?)
}

/// Columns: revision, request_id, commit_time, content, previous content, and the
/// writer's client id and agency (NULL before the audit log).
pub(crate) fn revision<R: AnyRow>(key: &RecordKey, row: &R) -> Result<RecordRevision>
where
    usize: ColumnIndex<R>,
{
    let content = row.opt_bytes(3)?.ok_or_else(|| corrupt("revision content", "NULL"))?;
    Ok(RecordRevision {
        key: key.clone(),
        revision: row.int(0)?,
        request_id: row.opt_text(1)?,
        commit_time: Timestamp(row.int(2)?),
        record: codec::decode(&content)?,
        previous: row.opt_bytes(4)?.as_deref().map(codec::decode).transpose()?,
        actor: row
            .opt_text(5)?
            .map(|client_id| {
                Ok::<_, Error>(crate::domain::access::Actor {
                    client_id,
                    agency: row.opt_text(6)?.map(stored_id).transpose()?,
                })
            })
            .transpose()?,
    })
}
