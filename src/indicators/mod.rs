//! The indicator engine: pure functions from a partnership's memberships and records
//! to its report (methodology sections 3 to 7). No I/O, no protobuf, no SQL.

pub mod composite;
pub mod engine;
pub mod report;

use std::collections::BTreeMap;

pub use engine::compute;

use crate::error::FieldViolation;
use report::Domain;

/// The methodology version every report states.
pub const METHODOLOGY_VERSION: &str = "1";
pub const DEFAULT_MIN_RESPONDENTS: u32 = 5;
pub const MAX_MIN_RESPONDENTS: u32 = 1000;
pub const MAX_WEIGHT: f64 = 1000.0;

/// The options of a report request, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportOptions {
    pub min_respondents: u32,
    /// D1..D7.
    pub weights: [f64; 7],
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { min_respondents: DEFAULT_MIN_RESPONDENTS, weights: [1.0; 7] }
    }
}

impl ReportOptions {
    /// Checks `min_respondents` (1 to 1000, default 5) and a weights map naming any of
    /// D1-D7 (each finite, 0 to 1000; unnamed domains keep 1; at least one of the seven
    /// above 0). Violations name `min_respondents`, `weights[<key>]` or `weights`.
    pub fn parse(
        min_respondents: Option<i32>,
        weights: &BTreeMap<String, f64>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let min_respondents = match min_respondents {
            None => DEFAULT_MIN_RESPONDENTS,
            Some(v) if (1..=MAX_MIN_RESPONDENTS as i32).contains(&v) => v as u32,
            Some(_) => {
                violations
                    .push(FieldViolation::invalid("min_respondents", "must be an integer from 1 to 1000"));
                DEFAULT_MIN_RESPONDENTS
            }
        };
        let mut w = [1.0; 7];
        for (key, &value) in weights {
            let path = format!("weights[{key}]");
            match Domain::from_id(key) {
                None => violations.push(FieldViolation::invalid(path, "must name a domain D1 to D7")),
                Some(_) if !value.is_finite() || !(0.0..=MAX_WEIGHT).contains(&value) => {
                    violations.push(FieldViolation::invalid(path, "must be a finite weight from 0 to 1000"))
                }
                Some(d) => w[d.index()] = value,
            }
        }
        if violations.is_empty() && w.iter().all(|&x| x <= 0.0) {
            violations
                .push(FieldViolation::invalid("weights", "must give at least one domain a weight above 0"));
        }
        if violations.is_empty() {
            Ok(ReportOptions { min_respondents, weights: w })
        } else {
            Err(violations)
        }
    }
}

#[cfg(test)]
mod tests;
