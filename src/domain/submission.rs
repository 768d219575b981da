//! What a submission returns, and records as read back.

use serde::{Deserialize, Serialize};

use super::{
    Date, Id, Timestamp,
    records::{Record, RecordKey, RecordKind},
};

/// The answer to an accepted batch; stored with its request id so that a retry gets
/// the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOutcome {
    pub record_count: i64,
    pub inserted: i64,
    pub replaced: i64,
    pub commit_time: Timestamp,
    /// This answers a request id already committed. Stored as true (see
    /// [`SubmitOutcome::stored`]), so every replay reads it back so; outcomes stored
    /// before the field existed read as false.
    #[serde(default)]
    pub replayed: bool,
    /// Checked, not stored: nothing was committed (AIP-163). Never stored.
    #[serde(skip)]
    pub validated_only: bool,
}

impl SubmitOutcome {
    /// The form kept with the request id: what a replay of it answers.
    pub fn stored(&self) -> SubmitOutcome {
        SubmitOutcome { replayed: true, validated_only: false, ..*self }
    }
}

/// The current version of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: RecordKey,
    pub record: Record,
    pub revision: i64,
    pub update_time: Timestamp,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRevision {
    pub key: RecordKey,
    pub revision: i64,
    pub record: Record,
    pub previous: Option<Record>,
    pub request_id: Option<String>,
    pub commit_time: Timestamp,
    /// Who wrote it; `None` for revisions written before the audit log existed.
    pub actor: Option<super::access::Actor>,
}

/// Filters of a record listing; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub partnership: Option<Id>,
    pub kind: Option<RecordKind>,
    pub agency: Option<Id>,
    /// Records falling in `from..=to`: a period inside, a contract overlapping, a
    /// date inside.
    pub from: Option<Date>,
    pub to: Option<Date>,
}

impl RecordFilter {
    /// Whether a record matches; storage filters in SQL and tests compare with this.
    pub fn matches(&self, record: &Record) -> bool {
        let (start, end) = record.span();
        let from = self.from.unwrap_or(Date::MIN);
        let to = self.to.unwrap_or(Date::MAX);
        let in_range = if record.kind() == RecordKind::ServiceContract {
            start <= to && end >= from
        } else {
            start >= from && end <= to
        };
        in_range
            && self.partnership.as_ref().is_none_or(|p| record.partnership() == Some(p))
            && self.kind.is_none_or(|k| record.kind() == k)
            && self.agency.as_ref().is_none_or(|a| record.reporting_agency() == a)
    }
}

/// What a report needs from storage: the partnership's memberships and every record
/// that may count for periods between two dates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportData {
    pub memberships: Vec<super::registry::Membership>,
    pub records: Vec<Record>,
}
