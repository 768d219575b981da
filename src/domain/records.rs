//! The nine record kinds of methodology 2.3, valid by construction: values of these
//! types come only out of the checks in [`super::check`] (or out of storage, which
//! stored only checked records).

use std::fmt::{self, Write};

use serde::{Deserialize, Serialize};

use super::{Date, Id, Period};

/// The kind of a record. The numbers are stored; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKind {
    WorkforceReturn = 1,
    ServiceContract = 2,
    TeamComposition = 3,
    SurveyResponse = 4,
    RelationshipRating = 5,
    PrinciplesAdoption = 6,
    PrinciplesEndorsement = 7,
    RestructuringEvent = 8,
    BudgetContribution = 9,
}

impl RecordKind {
    pub const ALL: [RecordKind; 9] = [
        RecordKind::WorkforceReturn,
        RecordKind::ServiceContract,
        RecordKind::TeamComposition,
        RecordKind::SurveyResponse,
        RecordKind::RelationshipRating,
        RecordKind::PrinciplesAdoption,
        RecordKind::PrinciplesEndorsement,
        RecordKind::RestructuringEvent,
        RecordKind::BudgetContribution,
    ];

    /// The range `[low, high)` of the keys of this kind's records.
    pub fn key_range(self) -> (String, String) {
        key_range(&format!("{}/", self.snake_name()))
    }

    /// The record's name in snake case, as in field paths and keys.
    pub fn snake_name(self) -> &'static str {
        match self {
            RecordKind::WorkforceReturn => "workforce_return",
            RecordKind::ServiceContract => "service_contract",
            RecordKind::TeamComposition => "team_composition",
            RecordKind::SurveyResponse => "survey_response",
            RecordKind::RelationshipRating => "relationship_rating",
            RecordKind::PrinciplesAdoption => "principles_adoption",
            RecordKind::PrinciplesEndorsement => "principles_endorsement",
            RecordKind::RestructuringEvent => "restructuring_event",
            RecordKind::BudgetContribution => "budget_contribution",
        }
    }

    pub fn from_snake_name(s: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.snake_name() == s)
    }

    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i64) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| i64::from(k.code()) == code)
    }

    /// Whether records of this kind carry a period (their span is the period's).
    pub fn has_period(self) -> bool {
        matches!(
            self,
            RecordKind::WorkforceReturn
                | RecordKind::TeamComposition
                | RecordKind::SurveyResponse
                | RecordKind::RelationshipRating
                | RecordKind::BudgetContribution
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Delivery {
    InHouse,
    Outsourced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Employment {
    Permanent,
    FixedTerm,
    AgencyStaff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestructuringKind {
    Merger,
    Reorganisation,
    LeadershipChange,
    OutsourcingTransfer,
    Insourcing,
    Other,
}

/// The two optional stability fields of a workforce return, which come together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stability {
    pub staff_over_one_year_service: i64,
    pub headcount_one_year_ago: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkforceReturn {
    pub partnership: Id,
    pub agency: Id,
    pub period: Period,
    pub headcount_start: i64,
    pub headcount_end: i64,
    pub joiners: i64,
    pub leavers: i64,
    pub permanent: i64,
    pub fixed_term: i64,
    pub agency_staff: i64,
    pub stability: Option<Stability>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceContract {
    pub partnership: Id,
    pub contract_id: Id,
    pub service_name: String,
    pub commissioner: Id,
    pub provider: Id,
    pub delivery: Delivery,
    pub annual_value_pence: i64,
    pub start_date: Date,
    pub end_date: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamEntry {
    pub employer: Id,
    pub employment: Employment,
    pub headcount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamComposition {
    pub partnership: Id,
    pub team_id: Id,
    pub period: Period,
    pub reporting_agency: Id,
    pub entries: Vec<TeamEntry>,
}

/// The survey items, each 1..=5 or absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyItems {
    pub shared_vision: Option<u8>,
    pub shared_values: Option<u8>,
    pub morale: Option<u8>,
    pub loyalty: Option<u8>,
    pub motivation: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyResponse {
    pub partnership: Id,
    pub period: Period,
    pub response_id: Id,
    pub respondent_agency: Id,
    pub items: SurveyItems,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipRating {
    pub partnership: Id,
    pub period: Period,
    pub rater: Id,
    pub ratee: Id,
    pub reliability: u8,
    pub mission_support: u8,
    pub openness: u8,
    pub power_influence: u8,
    pub involvement: u8,
    pub resource_contribution: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinciplesAdoption {
    pub partnership: Id,
    pub version: i64,
    pub title: String,
    pub adoption_date: Date,
    pub reporting_agency: Id,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinciplesEndorsement {
    pub partnership: Id,
    pub version: i64,
    pub agency: Id,
    pub endorsement_date: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestructuringEvent {
    pub agency: Id,
    pub event_id: Id,
    pub date: Date,
    pub kind: RestructuringKind,
    pub staff_affected: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetContribution {
    pub partnership: Id,
    pub agency: Id,
    pub period: Period,
    pub pooled_pence: i64,
    pub aligned_pence: i64,
}

/// A checked record of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    WorkforceReturn(WorkforceReturn),
    ServiceContract(ServiceContract),
    TeamComposition(TeamComposition),
    SurveyResponse(SurveyResponse),
    RelationshipRating(RelationshipRating),
    PrinciplesAdoption(PrinciplesAdoption),
    PrinciplesEndorsement(PrinciplesEndorsement),
    RestructuringEvent(RestructuringEvent),
    BudgetContribution(BudgetContribution),
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::WorkforceReturn(_) => RecordKind::WorkforceReturn,
            Record::ServiceContract(_) => RecordKind::ServiceContract,
            Record::TeamComposition(_) => RecordKind::TeamComposition,
            Record::SurveyResponse(_) => RecordKind::SurveyResponse,
            Record::RelationshipRating(_) => RecordKind::RelationshipRating,
            Record::PrinciplesAdoption(_) => RecordKind::PrinciplesAdoption,
            Record::PrinciplesEndorsement(_) => RecordKind::PrinciplesEndorsement,
            Record::RestructuringEvent(_) => RecordKind::RestructuringEvent,
            Record::BudgetContribution(_) => RecordKind::BudgetContribution,
        }
    }

    /// The partnership the record belongs to; restructuring events belong to none.
    pub fn partnership(&self) -> Option<&Id> {
        match self {
            Record::WorkforceReturn(r) => Some(&r.partnership),
            Record::ServiceContract(r) => Some(&r.partnership),
            Record::TeamComposition(r) => Some(&r.partnership),
            Record::SurveyResponse(r) => Some(&r.partnership),
            Record::RelationshipRating(r) => Some(&r.partnership),
            Record::PrinciplesAdoption(r) => Some(&r.partnership),
            Record::PrinciplesEndorsement(r) => Some(&r.partnership),
            Record::RestructuringEvent(_) => None,
            Record::BudgetContribution(r) => Some(&r.partnership),
        }
    }

    /// The reporting agency (methodology 2.3), on which the member filter acts.
    pub fn reporting_agency(&self) -> &Id {
        match self {
            Record::WorkforceReturn(r) => &r.agency,
            Record::ServiceContract(r) => &r.commissioner,
            Record::TeamComposition(r) => &r.reporting_agency,
            Record::SurveyResponse(r) => &r.respondent_agency,
            Record::RelationshipRating(r) => &r.rater,
            Record::PrinciplesAdoption(r) => &r.reporting_agency,
            Record::PrinciplesEndorsement(r) => &r.agency,
            Record::RestructuringEvent(r) => &r.agency,
            Record::BudgetContribution(r) => &r.agency,
        }
    }

    /// The record's period, for the kinds that have one.
    pub fn period(&self) -> Option<Period> {
        match self {
            Record::WorkforceReturn(r) => Some(r.period),
            Record::TeamComposition(r) => Some(r.period),
            Record::SurveyResponse(r) => Some(r.period),
            Record::RelationshipRating(r) => Some(r.period),
            Record::BudgetContribution(r) => Some(r.period),
            _ => None,
        }
    }

    /// The days the record speaks of: its period, a contract's term, or the single
    /// date of a dated record. Storage indexes on it to fetch only what a report reads.
    pub fn span(&self) -> (Date, Date) {
        match self {
            Record::ServiceContract(r) => (r.start_date, r.end_date),
            Record::PrinciplesAdoption(r) => (r.adoption_date, r.adoption_date),
            Record::PrinciplesEndorsement(r) => (r.endorsement_date, r.endorsement_date),
            Record::RestructuringEvent(r) => (r.date, r.date),
            Record::WorkforceReturn(r) => (r.period.start(), r.period.end()),
            Record::TeamComposition(r) => (r.period.start(), r.period.end()),
            Record::SurveyResponse(r) => (r.period.start(), r.period.end()),
            Record::RelationshipRating(r) => (r.period.start(), r.period.end()),
            Record::BudgetContribution(r) => (r.period.start(), r.period.end()),
        }
    }

    /// The natural key, as a path: the kind in snake case, then the key's parts.
    pub fn key(&self) -> RecordKey {
        let mut s = String::with_capacity(64);
        s.push_str(self.kind().snake_name());
        let mut part = |p: &dyn fmt::Display| {
            // Writing to a String cannot fail.
            let _ = write!(s, "/{p}");
        };
        match self {
            Record::WorkforceReturn(r) => {
                part(&r.partnership);
                part(&r.agency);
                part(&r.period);
            }
            Record::ServiceContract(r) => {
                part(&r.partnership);
                part(&r.contract_id);
            }
            Record::TeamComposition(r) => {
                part(&r.partnership);
                part(&r.team_id);
                part(&r.period);
            }
            Record::SurveyResponse(r) => {
                part(&r.partnership);
                part(&r.period);
                part(&r.response_id);
            }
            Record::RelationshipRating(r) => {
                part(&r.partnership);
                part(&r.period);
                part(&r.rater);
                part(&r.ratee);
            }
            Record::PrinciplesAdoption(r) => {
                part(&r.partnership);
                part(&r.version);
            }
            Record::PrinciplesEndorsement(r) => {
                part(&r.partnership);
                part(&r.version);
                part(&r.agency);
            }
            Record::RestructuringEvent(r) => {
                part(&r.agency);
                part(&r.event_id);
            }
            Record::BudgetContribution(r) => {
                part(&r.partnership);
                part(&r.agency);
                part(&r.period);
            }
        }
        RecordKey(s)
    }
}

/// A record's natural key as a path, e.g. `workforce_return/pa/nhs-a/2026Q3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);

impl RecordKey {
    /// Checks a key given by a caller: a known kind followed by the right number of
    /// well-formed parts.
    pub fn parse(s: &str) -> Result<RecordKey, &'static str> {
        const BAD: &str = "must be a record key such as workforce_return/{partnership}/{agency}/{period}";
        let mut parts = s.split('/');
        let kind = parts.next().and_then(RecordKind::from_snake_name).ok_or(BAD)?;
        let rest: Vec<&str> = parts.collect();
        let id = |s: &str| Id::parse(s).is_ok();
        let period = |s: &str| Period::parse(s).is_ok();
        let version = |s: &str| s.parse::<i64>().is_ok_and(|v| v >= 1 && v.to_string() == s);
        let ok = match (kind, rest.as_slice()) {
            (RecordKind::WorkforceReturn | RecordKind::BudgetContribution, [p, a, per]) => {
                id(p) && id(a) && period(per)
            }
            (RecordKind::ServiceContract, [p, c]) => id(p) && id(c),
            (RecordKind::TeamComposition, [p, t, per]) => id(p) && id(t) && period(per),
            (RecordKind::SurveyResponse, [p, per, r]) => id(p) && period(per) && id(r),
            (RecordKind::RelationshipRating, [p, per, a, b]) => id(p) && period(per) && id(a) && id(b),
            (RecordKind::PrinciplesAdoption, [p, v]) => id(p) && version(v),
            (RecordKind::PrinciplesEndorsement, [p, v, a]) => id(p) && version(v) && id(a),
            (RecordKind::RestructuringEvent, [a, e]) => id(a) && id(e),
            _ => false,
        };
        if ok { Ok(RecordKey(s.to_string())) } else { Err(BAD) }
    }

    /// A key read back from storage, trusted as written.
    pub fn from_stored(s: String) -> RecordKey {
        RecordKey(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> Option<RecordKind> {
        self.0.split('/').next().and_then(RecordKind::from_snake_name)
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The range `[low, high)` of the keys that begin with `prefix`, a path ending in '/':
/// the upper bound replaces that final '/' with the next byte, '0' (keys compare as
/// bytes on both backends).
pub fn key_range(prefix: &str) -> (String, String) {
    let stem = prefix.strip_suffix('/').unwrap_or(prefix);
    (format!("{stem}/"), format!("{stem}0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_range_holds_its_prefix_and_nothing_beside_it() {
        let (low, high) = RecordKind::RestructuringEvent.key_range();
        let inside = |k: &str| low.as_str() <= k && k < high.as_str();
        assert!(inside("restructuring_event/agency/ev-1"));
        assert!(inside("restructuring_event/~"));
        assert!(!inside("restructuring_event"));
        assert!(!inside("restructuring_event-x/agency/ev-1"));
        assert!(!inside("restructuring_events/agency/ev-1"));
        assert!(!inside("principles_endorsement/p/1/a"));
        assert_eq!(key_range("a/b/"), ("a/b/".to_string(), "a/b0".to_string()));
    }

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    #[test]
    fn keys_are_paths_that_parse_back() {
        let r = Record::RelationshipRating(RelationshipRating {
            partnership: id("pa"),
            period: Period::parse("2026Q3").unwrap(),
            rater: id("nhs-a"),
            ratee: id("la-b"),
            reliability: 4,
            mission_support: 4,
            openness: 4,
            power_influence: 3,
            involvement: 3,
            resource_contribution: 3,
        });
        let key = r.key();
        assert_eq!(key.as_str(), "relationship_rating/pa/2026Q3/nhs-a/la-b");
        assert_eq!(RecordKey::parse(key.as_str()).unwrap(), key);
        assert_eq!(key.kind(), Some(RecordKind::RelationshipRating));
        assert_eq!(r.span().0.to_string(), "2026-07-01");
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "",
            "workforce_return",
            "workforce_return/pa/nhs-a",
            "workforce_return/pa/nhs-a/2026Q5",
            "principles_adoption/pa/0",
            "principles_adoption/pa/01",
            "unknown_kind/pa/x",
            "restructuring_event/NHS/e1",
            "service_contract/pa/c1/extra",
        ] {
            assert!(RecordKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RecordKey::parse("principles_endorsement/pa/12/nhs-a").is_ok());
    }

    #[test]
    fn payloads_round_trip_through_json() {
        let r = Record::WorkforceReturn(WorkforceReturn {
            partnership: id("pa"),
            agency: id("nhs-a"),
            period: Period::parse("2026Q3").unwrap(),
            headcount_start: 100,
            headcount_end: 110,
            joiners: 15,
            leavers: 5,
            permanent: 90,
            fixed_term: 15,
            agency_staff: 5,
            stability: Some(Stability { staff_over_one_year_service: 80, headcount_one_year_ago: 100 }),
        });
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
    }
}
