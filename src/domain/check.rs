//! The checks on submitted records (methodology 2.2 to 2.4), in one place.
//!
//! A batch is checked in two phases. [`check_records`] makes every check that needs no
//! stored records: formats, ranges, enums, known agencies and partnerships (these are
//! never deleted, so a lookup made before the write transaction stays true), and the
//! checks across fields. [`CheckedBatch::apply_preconditions`] then makes the
//! FAILED_PRECONDITION checks of adoptions and endorsements against facts that storage
//! loads inside the write transaction, so that they hold when the batch commits.
//!
//! Field paths follow methodology 2.4: `records[i].<kind>.<field>`. Within a record,
//! each field is first checked on its own; a check across fields is made only when
//! every field it involves passed its own checks; the precondition checks only when
//! the record has no other violation. So a path appears at most once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{
    Date, Id, Period,
    records::{
        BudgetContribution, Delivery, Employment, PrinciplesAdoption, PrinciplesEndorsement, Record,
        RecordKind, RelationshipRating, RestructuringEvent, RestructuringKind, ServiceContract, Stability,
        SurveyItems, SurveyResponse, TeamComposition, TeamEntry, WorkforceReturn,
    },
    registry::{MembershipTerms, NAME, Role, Text},
};
use crate::error::{Error, FieldViolation, ViolationKind, reason};

/// Most records a batch may hold.
pub const MAX_BATCH_RECORDS: usize = 10_000;
/// Most violations listed in a rejection; the rest are counted.
pub const MAX_LISTED_VIOLATIONS: usize = 100;

// ---------------------------------------------------------------------------------
// Inputs: a record as submitted, before any check. Enums arrive already mapped from
// the wire; `None` stands for unspecified or unknown.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkforceReturnInput {
    pub partnership: String,
    pub agency: String,
    pub period: String,
    pub headcount_start: i64,
    pub headcount_end: i64,
    pub joiners: i64,
    pub leavers: i64,
    pub permanent: i64,
    pub fixed_term: i64,
    pub agency_staff: i64,
    pub staff_over_one_year_service: Option<i64>,
    pub headcount_one_year_ago: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceContractInput {
    pub partnership: String,
    pub contract_id: String,
    pub service_name: String,
    pub commissioner: String,
    pub provider: String,
    pub delivery: Option<Delivery>,
    pub annual_value_pence: i64,
    pub start_date: String,
    pub end_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamEntryInput {
    pub employer: String,
    pub employment: Option<Employment>,
    pub headcount: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamCompositionInput {
    pub partnership: String,
    pub team_id: String,
    pub period: String,
    pub reporting_agency: String,
    pub entries: Vec<TeamEntryInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SurveyResponseInput {
    pub partnership: String,
    pub period: String,
    pub response_id: String,
    pub respondent_agency: String,
    pub shared_vision: Option<i32>,
    pub shared_values: Option<i32>,
    pub morale: Option<i32>,
    pub loyalty: Option<i32>,
    pub motivation: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationshipRatingInput {
    pub partnership: String,
    pub period: String,
    pub rater: String,
    pub ratee: String,
    pub reliability: i32,
    pub mission_support: i32,
    pub openness: i32,
    pub power_influence: i32,
    pub involvement: i32,
    pub resource_contribution: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrinciplesAdoptionInput {
    pub partnership: String,
    pub version: i64,
    pub title: String,
    pub adoption_date: String,
    pub reporting_agency: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrinciplesEndorsementInput {
    pub partnership: String,
    pub version: i64,
    pub agency: String,
    pub endorsement_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestructuringEventInput {
    pub agency: String,
    pub event_id: String,
    pub date: String,
    pub kind: Option<RestructuringKind>,
    pub staff_affected: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetContributionInput {
    pub partnership: String,
    pub agency: String,
    pub period: String,
    pub pooled_pence: i64,
    pub aligned_pence: i64,
}

/// A submitted record of any kind; `Missing` when none was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordInput {
    Missing,
    WorkforceReturn(WorkforceReturnInput),
    ServiceContract(ServiceContractInput),
    TeamComposition(TeamCompositionInput),
    SurveyResponse(SurveyResponseInput),
    RelationshipRating(RelationshipRatingInput),
    PrinciplesAdoption(PrinciplesAdoptionInput),
    PrinciplesEndorsement(PrinciplesEndorsementInput),
    RestructuringEvent(RestructuringEventInput),
    BudgetContribution(BudgetContributionInput),
}

impl RecordInput {
    /// Adds the agency and partnership ids this record names to the sets, so they
    /// can be looked up in one go.
    pub fn references(&self, refs: &mut References) {
        let mut a = |s: &String| refs.agencies.insert(s.clone());
        match self {
            RecordInput::Missing => {}
            RecordInput::WorkforceReturn(r) => {
                a(&r.agency);
            }
            RecordInput::ServiceContract(r) => {
                a(&r.commissioner);
                a(&r.provider);
            }
            RecordInput::TeamComposition(r) => {
                a(&r.reporting_agency);
                for e in &r.entries {
                    a(&e.employer);
                }
            }
            RecordInput::SurveyResponse(r) => {
                a(&r.respondent_agency);
            }
            RecordInput::RelationshipRating(r) => {
                a(&r.rater);
                a(&r.ratee);
            }
            RecordInput::PrinciplesAdoption(r) => {
                a(&r.reporting_agency);
            }
            RecordInput::PrinciplesEndorsement(r) => {
                a(&r.agency);
            }
            RecordInput::RestructuringEvent(r) => {
                a(&r.agency);
            }
            RecordInput::BudgetContribution(r) => {
                a(&r.agency);
            }
        }
        let partnership = match self {
            RecordInput::Missing | RecordInput::RestructuringEvent(_) => None,
            RecordInput::WorkforceReturn(r) => Some(&r.partnership),
            RecordInput::ServiceContract(r) => Some(&r.partnership),
            RecordInput::TeamComposition(r) => Some(&r.partnership),
            RecordInput::SurveyResponse(r) => Some(&r.partnership),
            RecordInput::RelationshipRating(r) => Some(&r.partnership),
            RecordInput::PrinciplesAdoption(r) => Some(&r.partnership),
            RecordInput::PrinciplesEndorsement(r) => Some(&r.partnership),
            RecordInput::BudgetContribution(r) => Some(&r.partnership),
        };
        if let Some(p) = partnership {
            refs.partnerships.insert(p.clone());
        }
    }
}

impl RecordInput {
    /// The field that names the record's reporting agency (methodology 2.3), as a
    /// path below `records[i]`, and its value as submitted; `None` for a record of no
    /// kind.
    pub fn reporting_agency(&self) -> Option<(&'static str, &str)> {
        Some(match self {
            RecordInput::Missing => return None,
            RecordInput::WorkforceReturn(r) => ("workforce_return.agency", &r.agency),
            RecordInput::ServiceContract(r) => ("service_contract.commissioner", &r.commissioner),
            RecordInput::TeamComposition(r) => ("team_composition.reporting_agency", &r.reporting_agency),
            RecordInput::SurveyResponse(r) => ("survey_response.respondent_agency", &r.respondent_agency),
            RecordInput::RelationshipRating(r) => ("relationship_rating.rater", &r.rater),
            RecordInput::PrinciplesAdoption(r) => {
                ("principles_adoption.reporting_agency", &r.reporting_agency)
            }
            RecordInput::PrinciplesEndorsement(r) => ("principles_endorsement.agency", &r.agency),
            RecordInput::RestructuringEvent(r) => ("restructuring_event.agency", &r.agency),
            RecordInput::BudgetContribution(r) => ("budget_contribution.agency", &r.agency),
        })
    }
}

/// Ids named by a batch. Malformed ones are included; lookups simply miss them.
#[derive(Debug, Clone, Default)]
pub struct References {
    pub agencies: BTreeSet<String>,
    pub partnerships: BTreeSet<String>,
}

impl References {
    pub fn of(inputs: &[RecordInput]) -> References {
        let mut refs = References::default();
        for input in inputs {
            input.references(&mut refs);
        }
        refs
    }
}

/// The registered agencies and partnerships among those a batch names.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub agencies: HashSet<Id>,
    pub partnerships: HashSet<Id>,
}

/// Most entries one team composition may list.
pub const MAX_TEAM_ENTRIES: usize = 1_000;
/// Most team entries one batch may hold in all.
pub const MAX_BATCH_TEAM_ENTRIES: usize = 100_000;

/// How big a batch is: what bounds the memory a server needs to hold it. The gRPC
/// adapter counts it on the wire before decoding (records and entries past the
/// limits are never decoded), so a request cannot make the server allocate more than
/// a valid one would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchShape {
    pub records: usize,
    /// Team compositions listing more than [`MAX_TEAM_ENTRIES`]: (record index,
    /// entries).
    pub oversized_teams: Vec<(usize, usize)>,
    /// Team entries of the batch's records, within the record limit.
    pub team_entries: usize,
}

impl BatchShape {
    /// The shape of inputs already in memory.
    pub fn of(inputs: &[RecordInput]) -> BatchShape {
        let mut shape = BatchShape { records: inputs.len(), ..BatchShape::default() };
        for (i, input) in inputs.iter().enumerate().take(MAX_BATCH_RECORDS) {
            if let RecordInput::TeamComposition(t) = input {
                shape.count_team(i, t.entries.len());
            }
        }
        shape
    }

    /// Adds the entries of the team composition at record `index`.
    pub fn count_team(&mut self, index: usize, entries: usize) {
        if entries > MAX_TEAM_ENTRIES {
            self.oversized_teams.push((index, entries));
        }
        self.team_entries += entries;
    }

    /// Whether a batch of this shape can be held and checked record by record.
    pub fn is_within_limits(&self) -> bool {
        check_batch_shape(self).is_empty()
    }
}

/// The violations of a batch too small or too big to be checked record by record.
pub fn check_batch_shape(shape: &BatchShape) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    match shape.records {
        0 => violations.push(FieldViolation::invalid("records", "must hold at least one record")),
        n if n > MAX_BATCH_RECORDS => violations.push(FieldViolation::invalid(
            "records",
            format_args!("must hold at most {MAX_BATCH_RECORDS} records (got {n})"),
        )),
        _ => {}
    }
    for &(i, n) in shape.oversized_teams.iter().take(MAX_LISTED_VIOLATIONS) {
        violations.push(FieldViolation::invalid(
            format!("records[{i}].team_composition.entries"),
            format_args!("must hold at most {MAX_TEAM_ENTRIES} entries (got {n})"),
        ));
    }
    if shape.team_entries > MAX_BATCH_TEAM_ENTRIES {
        violations.push(FieldViolation::invalid(
            "records",
            format_args!(
                "must hold at most {MAX_BATCH_TEAM_ENTRIES} team entries in all (got {})",
                shape.team_entries
            ),
        ));
    }
    violations
}

// ---------------------------------------------------------------------------------
// Phase 1: everything that needs no stored records.

/// The outcome of phase 1: the records that passed, with their positions, and the
/// violations of the others.
#[derive(Debug)]
pub struct CheckedBatch {
    pub len: usize,
    pub passed: Vec<(usize, Record)>,
    pub violations: Vec<(usize, FieldViolation)>,
}

/// Runs every check that needs no stored records on each input, in order.
pub fn check_records(inputs: Vec<RecordInput>, known: &Known) -> CheckedBatch {
    let len = inputs.len();
    let mut passed = Vec::with_capacity(len);
    let mut violations = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        let before = violations.len();
        if let Some(record) = check_record(index, input, known, &mut violations) {
            debug_assert_eq!(before, violations.len());
            passed.push((index, record));
        }
    }
    CheckedBatch { len, passed, violations }
}

struct Checker<'a> {
    index: usize,
    kind: &'static str,
    known: &'a Known,
    out: &'a mut Vec<(usize, FieldViolation)>,
    failed: bool,
}

impl Checker<'_> {
    fn path(&self, field: &str) -> String {
        if field.is_empty() {
            format!("records[{}].{}", self.index, self.kind)
        } else {
            format!("records[{}].{}.{}", self.index, self.kind, field)
        }
    }

    fn fail_kind(&mut self, field: &str, kind: ViolationKind, description: impl std::fmt::Display) {
        self.failed = true;
        let path = self.path(field);
        self.out.push((self.index, FieldViolation::new(path, kind, description)));
    }

    fn fail(&mut self, field: &str, description: impl std::fmt::Display) {
        self.fail_kind(field, ViolationKind::Invalid, description);
    }

    fn id(&mut self, field: &str, s: &str) -> Option<Id> {
        Id::parse(s).map_err(|e| self.fail(field, e)).ok()
    }

    fn agency(&mut self, field: &str, s: &str) -> Option<Id> {
        let id = self.id(field, s)?;
        if self.known.agencies.contains(&id) {
            Some(id)
        } else {
            self.fail_kind(
                field,
                ViolationKind::UnknownAgency,
                format_args!("names an unknown agency {id:?}"),
            );
            None
        }
    }

    fn partnership(&mut self, field: &str, s: &str) -> Option<Id> {
        let id = self.id(field, s)?;
        if self.known.partnerships.contains(&id) {
            Some(id)
        } else {
            self.fail_kind(
                field,
                ViolationKind::UnknownPartnership,
                format_args!("names an unknown partnership {id:?}"),
            );
            None
        }
    }

    fn period(&mut self, field: &str, s: &str) -> Option<Period> {
        Period::parse(s).map_err(|e| self.fail(field, e)).ok()
    }

    fn date(&mut self, field: &str, s: &str) -> Option<Date> {
        if s.is_empty() {
            self.fail(field, "is required");
            return None;
        }
        Date::parse(s).map_err(|e| self.fail(field, e)).ok()
    }

    fn text(&mut self, field: &str, s: &str) -> Option<String> {
        Text::required(s, NAME).map_err(|e| self.fail(field, e)).ok()
    }

    fn count(&mut self, field: &str, v: i64) -> Option<i64> {
        if v < 0 {
            self.fail(field, "must not be negative");
            return None;
        }
        Some(v)
    }

    fn version(&mut self, field: &str, v: i64) -> Option<i64> {
        if v < 1 {
            self.fail(field, "must be at least 1");
            return None;
        }
        Some(v)
    }

    fn scale(&mut self, field: &str, v: i32, max: i32) -> Option<u8> {
        if !(1..=max).contains(&v) {
            self.fail(field, format_args!("must be an integer from 1 to {max}"));
            return None;
        }
        Some(v as u8)
    }

    /// An optional survey item: `Some(None)` when absent.
    fn item(&mut self, field: &str, v: Option<i32>) -> Option<Option<u8>> {
        match v {
            None => Some(None),
            Some(v) => self.scale(field, v, 5).map(Some),
        }
    }

    fn enumeration<T>(&mut self, field: &str, v: Option<T>, names: &str) -> Option<T> {
        if v.is_none() {
            self.fail(field, format_args!("must be one of {names}"));
        }
        v
    }
}

fn check_record(
    index: usize,
    input: RecordInput,
    known: &Known,
    out: &mut Vec<(usize, FieldViolation)>,
) -> Option<Record> {
    let kind = match &input {
        RecordInput::Missing => {
            out.push((
                index,
                FieldViolation::invalid(format!("records[{index}]"), "must set exactly one record kind"),
            ));
            return None;
        }
        RecordInput::WorkforceReturn(_) => RecordKind::WorkforceReturn,
        RecordInput::ServiceContract(_) => RecordKind::ServiceContract,
        RecordInput::TeamComposition(_) => RecordKind::TeamComposition,
        RecordInput::SurveyResponse(_) => RecordKind::SurveyResponse,
        RecordInput::RelationshipRating(_) => RecordKind::RelationshipRating,
        RecordInput::PrinciplesAdoption(_) => RecordKind::PrinciplesAdoption,
        RecordInput::PrinciplesEndorsement(_) => RecordKind::PrinciplesEndorsement,
        RecordInput::RestructuringEvent(_) => RecordKind::RestructuringEvent,
        RecordInput::BudgetContribution(_) => RecordKind::BudgetContribution,
    };
    let mut c = Checker { index, kind: kind.snake_name(), known, out, failed: false };
    let record = match input {
        RecordInput::Missing => None,
        RecordInput::WorkforceReturn(r) => workforce_return(&mut c, r).map(Record::WorkforceReturn),
        RecordInput::ServiceContract(r) => service_contract(&mut c, r).map(Record::ServiceContract),
        RecordInput::TeamComposition(r) => team_composition(&mut c, r).map(Record::TeamComposition),
        RecordInput::SurveyResponse(r) => survey_response(&mut c, r).map(Record::SurveyResponse),
        RecordInput::RelationshipRating(r) => relationship_rating(&mut c, r).map(Record::RelationshipRating),
        RecordInput::PrinciplesAdoption(r) => principles_adoption(&mut c, r).map(Record::PrinciplesAdoption),
        RecordInput::PrinciplesEndorsement(r) => {
            principles_endorsement(&mut c, r).map(Record::PrinciplesEndorsement)
        }
        RecordInput::RestructuringEvent(r) => restructuring_event(&mut c, r).map(Record::RestructuringEvent),
        RecordInput::BudgetContribution(r) => budget_contribution(&mut c, r).map(Record::BudgetContribution),
    };
    // A record is built only from fields that all passed; any violation voids it.
    if c.failed { None } else { record }
}

fn workforce_return(c: &mut Checker, r: WorkforceReturnInput) -> Option<WorkforceReturn> {
    let partnership = c.partnership("partnership", &r.partnership);
    let agency = c.agency("agency", &r.agency);
    let period = c.period("period", &r.period);
    let headcount_start = c.count("headcount_start", r.headcount_start);
    let headcount_end = c.count("headcount_end", r.headcount_end);
    let joiners = c.count("joiners", r.joiners);
    let leavers = c.count("leavers", r.leavers);
    let permanent = c.count("permanent", r.permanent);
    let fixed_term = c.count("fixed_term", r.fixed_term);
    let agency_staff = c.count("agency_staff", r.agency_staff);
    let over = r.staff_over_one_year_service.map(|v| c.count("staff_over_one_year_service", v));
    let ago = r.headcount_one_year_ago.map(|v| c.count("headcount_one_year_ago", v));

    // Sums are exact (i128): an int64 overflow is a mismatch, never a wrap.
    if let (Some(p), Some(f), Some(a), Some(he)) = (permanent, fixed_term, agency_staff, headcount_end)
        && i128::from(p) + i128::from(f) + i128::from(a) != i128::from(he)
    {
        c.fail("headcount_end", "must equal permanent + fixed_term + agency_staff");
    }
    if let (Some(l), Some(hs), Some(j)) = (leavers, headcount_start, joiners)
        && i128::from(l) > i128::from(hs) + i128::from(j)
    {
        c.fail("leavers", "must not exceed headcount_start + joiners");
    }
    let stability = match (over, ago) {
        (None, None) => None,
        (Some(Some(_)), None) => {
            c.fail("headcount_one_year_ago", "is required when staff_over_one_year_service is given");
            None
        }
        (None, Some(Some(_))) => {
            c.fail("staff_over_one_year_service", "is required when headcount_one_year_ago is given");
            None
        }
        (Some(Some(o)), Some(Some(a))) => {
            if o > a {
                c.fail("staff_over_one_year_service", "must not exceed headcount_one_year_ago");
            }
            Some(Stability { staff_over_one_year_service: o, headcount_one_year_ago: a })
        }
        // One of them failed its own check; the pair is not checked further.
        _ => None,
    };
    Some(WorkforceReturn {
        partnership: partnership?,
        agency: agency?,
        period: period?,
        headcount_start: headcount_start?,
        headcount_end: headcount_end?,
        joiners: joiners?,
        leavers: leavers?,
        permanent: permanent?,
        fixed_term: fixed_term?,
        agency_staff: agency_staff?,
        stability,
    })
}

// The values as callers spell them (the contract's enum value names).
const DELIVERIES: &str = "DELIVERY_IN_HOUSE, DELIVERY_OUTSOURCED";
const EMPLOYMENTS: &str = "EMPLOYMENT_PERMANENT, EMPLOYMENT_FIXED_TERM, EMPLOYMENT_AGENCY_STAFF";
const RESTRUCTURING_KINDS: &str = "RESTRUCTURING_KIND_MERGER, RESTRUCTURING_KIND_REORGANISATION, \
     RESTRUCTURING_KIND_LEADERSHIP_CHANGE, RESTRUCTURING_KIND_OUTSOURCING_TRANSFER, \
     RESTRUCTURING_KIND_INSOURCING, RESTRUCTURING_KIND_OTHER";

fn service_contract(c: &mut Checker, r: ServiceContractInput) -> Option<ServiceContract> {
    let partnership = c.partnership("partnership", &r.partnership);
    let contract_id = c.id("contract_id", &r.contract_id);
    let service_name = c.text("service_name", &r.service_name);
    let commissioner = c.agency("commissioner", &r.commissioner);
    let provider = c.agency("provider", &r.provider);
    let delivery = c.enumeration("delivery", r.delivery, DELIVERIES);
    let annual_value_pence = c.count("annual_value_pence", r.annual_value_pence);
    let start_date = c.date("start_date", &r.start_date);
    let end_date = c.date("end_date", &r.end_date);
    if let (Some(s), Some(e)) = (start_date, end_date)
        && e < s
    {
        c.fail("end_date", "must not be before start_date");
    }
    if let (Some(d), Some(p), Some(cm)) = (delivery, &provider, &commissioner) {
        match d {
            Delivery::InHouse if p != cm => {
                c.fail("provider", "must be the commissioner for IN_HOUSE delivery")
            }
            Delivery::Outsourced if p == cm => {
                c.fail("provider", "must differ from the commissioner for OUTSOURCED delivery")
            }
            _ => {}
        }
    }
    Some(ServiceContract {
        partnership: partnership?,
        contract_id: contract_id?,
        service_name: service_name?,
        commissioner: commissioner?,
        provider: provider?,
        delivery: delivery?,
        annual_value_pence: annual_value_pence?,
        start_date: start_date?,
        end_date: end_date?,
    })
}

fn team_composition(c: &mut Checker, r: TeamCompositionInput) -> Option<TeamComposition> {
    let partnership = c.partnership("partnership", &r.partnership);
    let team_id = c.id("team_id", &r.team_id);
    let period = c.period("period", &r.period);
    let reporting_agency = c.agency("reporting_agency", &r.reporting_agency);
    if r.entries.is_empty() {
        c.fail("entries", "must have at least one entry");
    }
    let mut entries = Vec::with_capacity(r.entries.len());
    let mut all_headcounts_valid = true;
    for (j, e) in r.entries.iter().enumerate() {
        let employer = c.agency(&format!("entries[{j}].employer"), &e.employer);
        let employment = c.enumeration(&format!("entries[{j}].employment"), e.employment, EMPLOYMENTS);
        let headcount = if e.headcount < 1 {
            c.fail(&format!("entries[{j}].headcount"), "must be at least 1");
            all_headcounts_valid = false;
            None
        } else {
            Some(e.headcount)
        };
        entries.push((employer, employment, headcount));
    }
    let mut seen: HashMap<(&Id, Employment), usize> = HashMap::new();
    for (j, (employer, employment, _)) in entries.iter().enumerate() {
        if let (Some(employer), Some(employment)) = (employer, employment) {
            if let Some(first) = seen.get(&(employer, *employment)) {
                c.fail(
                    &format!("entries[{j}]"),
                    format_args!("repeats the employer and employment of entries[{first}]"),
                );
            } else {
                seen.insert((employer, *employment), j);
            }
        }
    }
    if all_headcounts_valid && !entries.is_empty() {
        let total: i128 = entries.iter().filter_map(|(_, _, h)| *h).map(i128::from).sum();
        if total > i128::from(i64::MAX) {
            c.fail("entries", "headcounts must sum to at most 2^63 - 1");
        }
    }
    let entries = entries
        .into_iter()
        .map(|(employer, employment, headcount)| {
            Some(TeamEntry { employer: employer?, employment: employment?, headcount: headcount? })
        })
        .collect::<Option<Vec<_>>>();
    Some(TeamComposition {
        partnership: partnership?,
        team_id: team_id?,
        period: period?,
        reporting_agency: reporting_agency?,
        entries: entries?,
    })
}

fn survey_response(c: &mut Checker, r: SurveyResponseInput) -> Option<SurveyResponse> {
    let partnership = c.partnership("partnership", &r.partnership);
    let period = c.period("period", &r.period);
    let response_id = c.id("response_id", &r.response_id);
    let respondent_agency = c.agency("respondent_agency", &r.respondent_agency);
    let shared_vision = c.item("shared_vision", r.shared_vision);
    let shared_values = c.item("shared_values", r.shared_values);
    let morale = c.item("morale", r.morale);
    let loyalty = c.item("loyalty", r.loyalty);
    let motivation = c.item("motivation", r.motivation);
    let present = [r.shared_vision, r.shared_values, r.morale, r.loyalty, r.motivation];
    if present.iter().all(Option::is_none) {
        c.fail("", "must have at least one survey item");
    }
    Some(SurveyResponse {
        partnership: partnership?,
        period: period?,
        response_id: response_id?,
        respondent_agency: respondent_agency?,
        items: SurveyItems {
            shared_vision: shared_vision?,
            shared_values: shared_values?,
            morale: morale?,
            loyalty: loyalty?,
            motivation: motivation?,
        },
    })
}

fn relationship_rating(c: &mut Checker, r: RelationshipRatingInput) -> Option<RelationshipRating> {
    let partnership = c.partnership("partnership", &r.partnership);
    let period = c.period("period", &r.period);
    let rater = c.agency("rater", &r.rater);
    let ratee = c.agency("ratee", &r.ratee);
    let reliability = c.scale("reliability", r.reliability, 4);
    let mission_support = c.scale("mission_support", r.mission_support, 4);
    let openness = c.scale("openness", r.openness, 4);
    let power_influence = c.scale("power_influence", r.power_influence, 4);
    let involvement = c.scale("involvement", r.involvement, 4);
    let resource_contribution = c.scale("resource_contribution", r.resource_contribution, 4);
    if let (Some(a), Some(b)) = (&rater, &ratee)
        && a == b
    {
        c.fail("ratee", "must differ from rater");
    }
    Some(RelationshipRating {
        partnership: partnership?,
        period: period?,
        rater: rater?,
        ratee: ratee?,
        reliability: reliability?,
        mission_support: mission_support?,
        openness: openness?,
        power_influence: power_influence?,
        involvement: involvement?,
        resource_contribution: resource_contribution?,
    })
}

fn principles_adoption(c: &mut Checker, r: PrinciplesAdoptionInput) -> Option<PrinciplesAdoption> {
    let partnership = c.partnership("partnership", &r.partnership);
    let version = c.version("version", r.version);
    let title = c.text("title", &r.title);
    let adoption_date = c.date("adoption_date", &r.adoption_date);
    let reporting_agency = c.agency("reporting_agency", &r.reporting_agency);
    Some(PrinciplesAdoption {
        partnership: partnership?,
        version: version?,
        title: title?,
        adoption_date: adoption_date?,
        reporting_agency: reporting_agency?,
    })
}

fn principles_endorsement(c: &mut Checker, r: PrinciplesEndorsementInput) -> Option<PrinciplesEndorsement> {
    let partnership = c.partnership("partnership", &r.partnership);
    let version = c.version("version", r.version);
    let agency = c.agency("agency", &r.agency);
    let endorsement_date = c.date("endorsement_date", &r.endorsement_date);
    Some(PrinciplesEndorsement {
        partnership: partnership?,
        version: version?,
        agency: agency?,
        endorsement_date: endorsement_date?,
    })
}

fn restructuring_event(c: &mut Checker, r: RestructuringEventInput) -> Option<RestructuringEvent> {
    let agency = c.agency("agency", &r.agency);
    let event_id = c.id("event_id", &r.event_id);
    let date = c.date("date", &r.date);
    let kind = c.enumeration("kind", r.kind, RESTRUCTURING_KINDS);
    let staff_affected = c.count("staff_affected", r.staff_affected);
    Some(RestructuringEvent {
        agency: agency?,
        event_id: event_id?,
        date: date?,
        kind: kind?,
        staff_affected: staff_affected?,
    })
}

fn budget_contribution(c: &mut Checker, r: BudgetContributionInput) -> Option<BudgetContribution> {
    let partnership = c.partnership("partnership", &r.partnership);
    let agency = c.agency("agency", &r.agency);
    let period = c.period("period", &r.period);
    let pooled_pence = c.count("pooled_pence", r.pooled_pence);
    let aligned_pence = c.count("aligned_pence", r.aligned_pence);
    Some(BudgetContribution {
        partnership: partnership?,
        agency: agency?,
        period: period?,
        pooled_pence: pooled_pence?,
        aligned_pence: aligned_pence?,
    })
}

// ---------------------------------------------------------------------------------
// Phase 2: the FAILED_PRECONDITION checks, against stored facts.

/// The stored facts the precondition checks of a batch need; storage loads exactly
/// these, inside the write transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactQuery {
    /// (partnership, agency) of each adoption's reporting agency.
    pub memberships: BTreeSet<(Id, Id)>,
    /// (partnership, version) of each endorsement: its adoption.
    pub adoptions: BTreeSet<(Id, i64)>,
    /// (partnership, version) of each adoption: the endorsements of that version.
    pub endorsements: BTreeSet<(Id, i64)>,
}

impl FactQuery {
    pub fn is_empty(&self) -> bool {
        self.memberships.is_empty() && self.adoptions.is_empty() && self.endorsements.is_empty()
    }
}

/// Stored facts for the precondition checks.
#[derive(Debug, Clone, Default)]
pub struct PreconditionFacts {
    pub memberships: HashMap<(Id, Id), MembershipTerms>,
    pub adoptions: HashMap<(Id, i64), Date>,
    pub endorsements: HashMap<(Id, i64), BTreeMap<Id, Date>>,
}

impl CheckedBatch {
    /// The facts phase 2 needs; empty when no passed record has a precondition.
    pub fn fact_query(&self) -> FactQuery {
        let mut q = FactQuery::default();
        for (_, record) in &self.passed {
            match record {
                Record::PrinciplesAdoption(a) => {
                    q.memberships.insert((a.partnership.clone(), a.reporting_agency.clone()));
                    q.endorsements.insert((a.partnership.clone(), a.version));
                }
                Record::PrinciplesEndorsement(e) => {
                    q.adoptions.insert((e.partnership.clone(), e.version));
                }
                _ => {}
            }
        }
        q
    }

    /// The rejection, if phase 1 already decided it and no precondition check is
    /// pending that could add to it.
    pub fn early_rejection(&self) -> Option<Error> {
        (!self.violations.is_empty() && self.fact_query().is_empty()).then(|| self.reject(Vec::new()))
    }

    fn reject(&self, more: Vec<(usize, FieldViolation)>) -> Error {
        let mut all = self.violations.clone();
        all.extend(more);
        Error::rejected(reason::INVALID_RECORDS, all, MAX_LISTED_VIOLATIONS)
    }

    /// Phase 2: checks adoptions and endorsements in record order against the stored
    /// facts and the earlier records of the batch that passed, and returns the
    /// records to store in order, or the batch's rejection with every violation.
    pub fn apply_preconditions(&self, facts: &PreconditionFacts) -> Result<Vec<&Record>, Error> {
        let mut adoptions: HashMap<(Id, i64), Date> = HashMap::new();
        let mut endorsements: HashMap<(Id, i64), BTreeMap<Id, Date>> = HashMap::new();
        let mut more = Vec::new();
        for (index, record) in &self.passed {
            let path = |field: &str| format!("records[{index}].{}.{field}", record.kind().snake_name());
            let mut fail = |field: &str, description: String| {
                more.push((
                    *index,
                    FieldViolation::new(path(field), ViolationKind::Precondition, description),
                ));
            };
            match record {
                Record::PrinciplesAdoption(a) => {
                    let key = (a.partnership.clone(), a.version);
                    let lead = facts
                        .memberships
                        .get(&(a.partnership.clone(), a.reporting_agency.clone()))
                        .is_some_and(|t| t.role == Role::Lead && t.covers(a.adoption_date));
                    let mut ok = true;
                    if !lead {
                        ok = false;
                        fail(
                            "reporting_agency",
                            format!(
                                "must hold a LEAD membership of the partnership covering {}",
                                a.adoption_date
                            ),
                        );
                    }
                    // The batch's endorsements replace stored ones with the same key.
                    let stored = facts.endorsements.get(&key);
                    let batch = endorsements.get(&key);
                    let earlier = stored
                        .into_iter()
                        .flatten()
                        .filter(|(agency, _)| batch.is_none_or(|b| !b.contains_key(*agency)))
                        .chain(batch.into_iter().flatten())
                        .filter(|(_, date)| **date < a.adoption_date)
                        .min_by_key(|(agency, date)| (**date, (*agency).clone()));
                    if let Some((agency, date)) = earlier {
                        ok = false;
                        fail(
                            "adoption_date",
                            format!(
                                "must not be after an endorsement of version {} ({agency} on {date})",
                                a.version
                            ),
                        );
                    }
                    if ok {
                        adoptions.insert(key, a.adoption_date);
                    }
                }
                Record::PrinciplesEndorsement(e) => {
                    let key = (e.partnership.clone(), e.version);
                    match adoptions.get(&key).or_else(|| facts.adoptions.get(&key)) {
                        None => {
                            fail("version", format!("names version {} which has not been adopted", e.version))
                        }
                        Some(adopted) if e.endorsement_date < *adopted => fail(
                            "endorsement_date",
                            format!("must not be before the adoption of version {} on {adopted}", e.version),
                        ),
                        Some(_) => {
                            endorsements.entry(key).or_default().insert(e.agency.clone(), e.endorsement_date);
                        }
                    }
                }
                _ => {}
            }
        }
        if !self.violations.is_empty() || !more.is_empty() {
            return Err(self.reject(more));
        }
        Ok(self.passed.iter().map(|(_, r)| r).collect())
    }
}
