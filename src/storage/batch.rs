//! Backend-independent preparation of an accepted batch for writing: one row per
//! distinct natural key (the last record with the key wins), and the revisions each
//! record of the batch adds to the audit trail.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::codec;
use crate::{
    domain::{Id, records::Record, submission::SubmitOutcome},
    error::{Error, Result},
};

/// PERMISSION_DENIED for a batch whose record under `key` would replace a stored
/// record another agency reported: only that agency may correct it. Names the first
/// record of the batch with the key.
pub(crate) fn replaced_by_other_agency(records: &[&Record], key: &str) -> Error {
    let index = records.iter().position(|r| r.key().as_str() == key);
    let field = match index {
        Some(i) => format!("records[{i}].{}", records[i].kind().snake_name()),
        None => "records".to_string(),
    };
    Error::permission_denied(
        crate::domain::access::Permission::SubmitRecords.as_str(),
        format!(
            "{field} would replace the record {key}, which another agency reported; only it may correct it"
        ),
    )
    .with_metadata("field", field)
    .with_metadata("key", key)
}

/// The write of one natural key: its final content and how many records of the
/// batch wrote it.
#[derive(Debug)]
pub(crate) struct KeyWrite {
    pub key: String,
    pub kind: i16,
    pub partnership: Option<String>,
    pub reporting_agency: String,
    /// Days since 1970-01-01.
    pub span_start: i32,
    pub span_end: i32,
    /// Revisions this batch adds to the key.
    pub writes: i64,
    /// Every version written, in batch order.
    versions: Vec<Vec<u8>>,
}

/// One row of the audit trail.
#[derive(Debug)]
pub(crate) struct RevisionRow {
    pub record_id: i64,
    pub revision: i64,
    pub content: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct PreparedBatch {
    pub record_count: i64,
    /// In ascending key order, so concurrent writers lock keys in one order.
    pub keys: Vec<KeyWrite>,
    /// Partnerships whose reports the batch can change.
    pub partnerships: BTreeSet<String>,
    /// Agencies with restructuring events in the batch: they change the reports of
    /// every partnership they belong to.
    pub event_agencies: BTreeSet<String>,
}

impl PreparedBatch {
    pub fn new(records: &[&Record]) -> Result<PreparedBatch> {
        let mut keys: BTreeMap<String, KeyWrite> = BTreeMap::new();
        let mut partnerships = BTreeSet::new();
        let mut event_agencies = BTreeSet::new();
        for record in records {
            let content = codec::encode(record)?;
            let agency = record.reporting_agency();
            match record.partnership() {
                Some(p) => {
                    if !partnerships.contains(p.as_str()) {
                        partnerships.insert(p.to_string());
                    }
                }
                None => {
                    event_agencies.insert(agency.to_string());
                }
            }
            let key = record.key().as_str().to_string();
            let (start, end) = record.span();
            let write = keys.entry(key.clone()).or_insert_with(|| KeyWrite {
                key,
                kind: record.kind().code(),
                partnership: record.partnership().map(Id::to_string),
                reporting_agency: String::new(),
                span_start: 0,
                span_end: 0,
                writes: 0,
                versions: Vec::new(),
            });
            // The last record with a key wins; a natural key fixes kind and
            // partnership, but the rest may change with each version.
            if write.reporting_agency != agency.as_str() {
                write.reporting_agency = agency.to_string();
            }
            write.span_start = start.to_days();
            write.span_end = end.to_days();
            write.writes += 1;
            write.versions.push(content);
        }
        Ok(PreparedBatch {
            record_count: records.len() as i64,
            keys: keys.into_values().collect(),
            partnerships,
            event_agencies,
        })
    }

    /// Given each key's row id and revision after the write, numbers the batch's
    /// versions and counts inserted and replaced records: a key's first record is an
    /// insert when the key was new (its revision equals its writes), every other record
    /// replaces.
    pub fn finish(
        self,
        written: &HashMap<String, (i64, i64)>,
        commit_time: crate::domain::Timestamp,
    ) -> Result<(SubmitOutcome, Vec<RevisionRow>)> {
        let mut inserted = 0;
        let mut rows = Vec::with_capacity(self.record_count as usize);
        for write in self.keys {
            let (record_id, last) = *written
                .get(&write.key)
                .ok_or_else(|| Error::internal(anyhow::anyhow!("no revision returned for {}", write.key)))?;
            let first = last - write.writes + 1;
            if first == 1 {
                inserted += 1;
            }
            for (offset, content) in write.versions.into_iter().enumerate() {
                rows.push(RevisionRow { record_id, revision: first + offset as i64, content });
            }
        }
        let outcome = SubmitOutcome {
            record_count: self.record_count,
            inserted,
            replaced: self.record_count - inserted,
            commit_time,
            replayed: false,
            validated_only: false,
        };
        Ok((outcome, rows))
    }
}
