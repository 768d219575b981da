//! The report the engine returns: every number of methodology sections 3 to 6.

use crate::domain::{Id, Period, records::RecordKind};

/// The seven domains, D1..D7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
}

impl Domain {
    pub const ALL: [Domain; 7] =
        [Domain::D1, Domain::D2, Domain::D3, Domain::D4, Domain::D5, Domain::D6, Domain::D7];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn id(self) -> &'static str {
        ["D1", "D2", "D3", "D4", "D5", "D6", "D7"][self.index()]
    }

    pub fn from_id(s: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| d.id() == s)
    }

    pub fn title(self) -> &'static str {
        [
            "shared vision",
            "interfaces",
            "shared values and teams",
            "workforce stability",
            "trust and reciprocity",
            "organisational stability",
            "pooled resources",
        ][self.index()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MissingReason {
    NoData,
    SuppressedSmallNumber,
    NoMembers,
    InsufficientData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    Green,
    Amber,
    Red,
}

/// Goalposts of a scored indicator: `worst` scores 0, `best` scores 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goalposts {
    pub worst: f64,
    pub best: f64,
}

impl Goalposts {
    pub fn direction(self) -> Direction {
        if self.best > self.worst { Direction::HigherIsBetter } else { Direction::LowerIsBetter }
    }
}

/// A named input of an indicator.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    /// An exact integer (sums of int64 values can pass int64).
    Int(i128),
    Float(f64),
    Date(String),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgencyTrust {
    pub agency: Id,
    pub value: f64,
    pub ties: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Indicator {
    pub id: &'static str,
    pub domain: Domain,
    /// `None` for reported (unscored) indicators.
    pub goalposts: Option<Goalposts>,
    pub value: Option<f64>,
    pub score: Option<f64>,
    pub inputs: Vec<(&'static str, InputValue)>,
    pub records_used: u64,
    pub missing: Option<MissingReason>,
    /// `trust_received` only.
    pub by_agency: Vec<AgencyTrust>,
    pub explanation: String,
}

impl Indicator {
    pub fn scored(&self) -> bool {
        self.goalposts.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DomainResult {
    pub domain: Domain,
    pub score: Option<f64>,
    pub weight: f64,
    pub indicator_ids: Vec<&'static str>,
    pub present: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensitivityRun {
    pub domain: Domain,
    pub factor: f64,
    pub psi: f64,
    pub band: Band,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopDrag {
    pub domain: Domain,
    pub term: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Composite {
    pub psi: Option<f64>,
    pub band: Option<Band>,
    pub psi_min: Option<f64>,
    pub psi_max: Option<f64>,
    pub band_stable: Option<bool>,
    pub sensitivity: Vec<SensitivityRun>,
    pub top_drags: Vec<TopDrag>,
    /// W over the present domains; `None` when no domain is present.
    pub total_weight: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertCode {
    NoSharedPrinciples,
    PooledWithoutVision,
    RestructuringAccelerating,
    LowSurveyResponse,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub code: AlertCode,
    pub message: String,
    pub indicator_ids: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub partnership: Id,
    pub period: Period,
    pub members: Vec<Id>,
    pub min_respondents: u32,
    pub weights: [f64; 7],
    pub indicators: Vec<Indicator>,
    pub domains: Vec<DomainResult>,
    pub composite: Composite,
    pub alerts: Vec<Alert>,
    /// Per record kind, in kind order: members reporting it for the period.
    pub coverage: Vec<(RecordKind, u64)>,
}

impl Report {
    pub fn indicator(&self, id: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.id == id)
    }
}
