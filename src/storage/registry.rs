//! Registering agencies, partnerships and memberships, singly or in batches: what
//! each write inserts, audits and changes is built here once for both backends, which
//! only run it ([`Store::write_registry`]). A single create is a batch of one, so
//! CreateAgency and BatchCreateAgencies are one write path.

use serde::{Serialize, de::DeserializeOwned};

use super::listing::Bind;
use crate::{
    domain::{
        Id, Timestamp,
        registry::{Agency, Membership, NewAgency, NewMembership, NewPartnership, Partnership},
    },
    error::{Error, Result, reason},
};

/// One registry write, ready to run in a transaction: rows of one INSERT (with the
/// error each row's conflict means), the audit keys, the partnerships whose data
/// version it changes.
#[derive(Debug)]
pub struct RegistryWrite {
    /// `$n` placeholders: PostgreSQL's, and SQLite reads them as positional too.
    pub(crate) sql: &'static str,
    pub(crate) rows: Vec<(Vec<Bind>, Error)>,
    pub(crate) keys: Vec<String>,
    /// Partnerships whose reports change, in id order (the order locks are taken in).
    pub(crate) changes: Vec<Id>,
    /// Partnerships created, whose data version starts at 0.
    pub(crate) created_partnerships: Vec<Id>,
    pub(crate) time: Timestamp,
}

const INSERT_AGENCY: &str =
    "INSERT INTO agencies (id, display_name, sector, create_time) VALUES ($1, $2, $3, $4)";
const INSERT_PARTNERSHIP: &str =
    "INSERT INTO partnerships (id, display_name, purpose, create_time) VALUES ($1, $2, $3, $4)";
const INSERT_MEMBERSHIP: &str = "INSERT INTO memberships \
     (partnership_id, agency_id, role, start_date, end_date, create_time, update_time) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

fn text(s: &str) -> Bind {
    Bind::Text(s.to_string())
}

pub(crate) fn agencies(new: Vec<NewAgency>) -> (RegistryWrite, Vec<Agency>) {
    let time = Timestamp::now();
    let created: Vec<Agency> = new
        .into_iter()
        .map(|a| Agency { id: a.id, display_name: a.display_name, sector: a.sector, create_time: time })
        .collect();
    let rows = created
        .iter()
        .map(|a| {
            let exists =
                Error::already_exists(reason::AGENCY_EXISTS, format!("agency {} already exists", a.id))
                    .with_metadata("agency", a.id.as_str());
            (
                vec![text(a.id.as_str()), text(&a.display_name), text(a.sector.as_str()), Bind::Int(time.0)],
                exists,
            )
        })
        .collect();
    let keys = created.iter().map(|a| format!("agencies/{}", a.id)).collect();
    let write = RegistryWrite {
        sql: INSERT_AGENCY,
        rows,
        keys,
        changes: Vec::new(),
        created_partnerships: Vec::new(),
        time,
    };
    (write, created)
}

pub(crate) fn partnerships(new: Vec<NewPartnership>) -> (RegistryWrite, Vec<Partnership>) {
    let time = Timestamp::now();
    let created: Vec<Partnership> = new
        .into_iter()
        .map(|p| Partnership {
            id: p.id,
            display_name: p.display_name,
            purpose: p.purpose,
            create_time: time,
        })
        .collect();
    let rows = created
        .iter()
        .map(|p| {
            let exists = Error::already_exists(
                reason::PARTNERSHIP_EXISTS,
                format!("partnership {} already exists", p.id),
            )
            .with_metadata("partnership", p.id.as_str());
            (vec![text(p.id.as_str()), text(&p.display_name), text(&p.purpose), Bind::Int(time.0)], exists)
        })
        .collect();
    let keys = created.iter().map(|p| format!("partnerships/{}", p.id)).collect();
    let created_partnerships = created.iter().map(|p| p.id.clone()).collect();
    let write = RegistryWrite {
        sql: INSERT_PARTNERSHIP,
        rows,
        keys,
        changes: Vec::new(),
        created_partnerships,
        time,
    };
    (write, created)
}

/// The partnerships and agencies must exist (callers check first: neither can be
/// deleted, so a positive check stays true).
pub(crate) fn memberships(new: Vec<NewMembership>) -> (RegistryWrite, Vec<Membership>) {
    let time = Timestamp::now();
    let created: Vec<Membership> = new
        .into_iter()
        .map(|m| Membership {
            partnership: m.partnership,
            agency: m.agency,
            terms: m.terms,
            create_time: time,
            update_time: time,
        })
        .collect();
    let rows = created
        .iter()
        .map(|m| {
            let exists = Error::already_exists(
                reason::MEMBERSHIP_EXISTS,
                format!(
                    "agency {} already has a membership of partnership {}; edit it with UpdateMembership",
                    m.agency, m.partnership
                ),
            )
            .with_metadata("partnership", m.partnership.as_str())
            .with_metadata("agency", m.agency.as_str());
            let binds = vec![
                text(m.partnership.as_str()),
                text(m.agency.as_str()),
                text(m.terms.role.as_str()),
                Bind::Text(m.terms.start_date.to_string()),
                Bind::OptText(m.terms.end_date.map(|d| d.to_string())),
                Bind::Int(time.0),
                Bind::Int(time.0),
            ];
            (binds, exists)
        })
        .collect();
    let keys = created.iter().map(Membership::name).collect();
    let changes: std::collections::BTreeSet<&Id> = created.iter().map(|m| &m.partnership).collect();
    let changes = changes.into_iter().cloned().collect();
    let write =
        RegistryWrite { sql: INSERT_MEMBERSHIP, rows, keys, changes, created_partnerships: Vec::new(), time };
    (write, created)
}

/// The JSON kept with a write's request id: the entry for a single create (as single
/// creates always stored it), the list for a batch.
pub(crate) fn answer<T: Serialize>(created: &T) -> Result<serde_json::Value> {
    serde_json::to_value(created).map_err(|e| Error::internal(e.into()))
}

/// What a write returns: what it created, or what the request id's first write did.
pub(crate) fn returned<T: DeserializeOwned>(created: T, replayed: Option<serde_json::Value>) -> Result<T> {
    match replayed {
        None => Ok(created),
        Some(stored) => serde_json::from_value(stored)
            .map_err(|e| Error::internal(anyhow::anyhow!("decoding a stored response: {e}"))),
    }
}

/// The one entry of a single create.
pub(crate) fn single<T>(created: Vec<T>) -> Result<T> {
    created.into_iter().next().ok_or_else(|| Error::internal(anyhow::anyhow!("a create wrote nothing")))
}
