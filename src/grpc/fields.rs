//! Field-by-field parsing of requests into domain values, collecting one violation per
//! bad field under its request path instead of stopping at the first.

use std::fmt::Display;

use crate::{
    domain::{
        Date, Id, Period, RequestId, Timestamp,
        registry::{Text, TextLimit},
    },
    error::{Error, FieldViolation, Result, ViolationKind},
};

/// Collects violations while parsing a request.
#[derive(Debug, Default)]
pub struct Fields {
    pub violations: Vec<FieldViolation>,
}

impl Fields {
    pub fn new() -> Self {
        Fields::default()
    }

    pub fn fail(&mut self, path: impl Into<String>, description: impl Display) {
        self.violations.push(FieldViolation::invalid(path, description));
    }

    pub fn fail_kind(&mut self, path: impl Into<String>, kind: ViolationKind, description: impl Display) {
        self.violations.push(FieldViolation::new(path, kind, description));
    }

    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    fn check<T, E: Display>(&mut self, path: &str, r: std::result::Result<T, E>) -> Option<T> {
        r.map_err(|e| self.fail(path, e)).ok()
    }

    pub fn id(&mut self, path: &str, s: &str) -> Option<Id> {
        self.check(path, Id::parse(s))
    }

    pub fn date(&mut self, path: &str, s: &str) -> Option<Date> {
        if s.is_empty() {
            self.fail(path, "is required");
            return None;
        }
        self.check(path, Date::parse(s))
    }

    /// An optional date: empty means absent (`Some(None)`); `None` when malformed.
    pub fn optional_date(&mut self, path: &str, s: &str) -> Option<Option<Date>> {
        if s.is_empty() { Some(None) } else { self.date(path, s).map(Some) }
    }

    pub fn period(&mut self, path: &str, s: &str) -> Option<Period> {
        self.check(path, Period::parse(s))
    }

    pub fn required_text(&mut self, path: &str, s: &str, limit: TextLimit) -> Option<String> {
        self.check(path, Text::required(s, limit))
    }

    pub fn optional_text(&mut self, path: &str, s: &str, limit: TextLimit) -> Option<String> {
        self.check(path, Text::optional(s, limit))
    }

    /// A protobuf enum field: UNSPECIFIED (0) and numbers this build does not know are
    /// both rejected.
    pub fn enumeration<T>(
        &mut self,
        path: &str,
        value: i32,
        known: impl Fn(i32) -> Option<T>,
        names: &str,
    ) -> Option<T> {
        let parsed = if value == 0 { None } else { known(value) };
        if parsed.is_none() {
            self.fail(path, format_args!("must be one of {names}"));
        }
        parsed
    }

    pub fn request_id(&mut self, path: &str, s: &str) -> Option<RequestId> {
        self.check(path, RequestId::parse(s)).flatten()
    }

    /// Parses a resource name `{collection}/{id}`.
    pub fn name(&mut self, path: &str, s: &str, collection: &str) -> Option<Id> {
        let id = s.strip_prefix(collection).and_then(|rest| rest.strip_prefix('/'));
        match id.map(Id::parse) {
            Some(Ok(id)) => Some(id),
            _ => {
                self.fail(path, format_args!("must be a resource name {collection}/{{id}}"));
                None
            }
        }
    }

    /// The INVALID_ARGUMENT error of a request whose parsing found violations.
    pub fn into_error(self, reason: &'static str) -> Error {
        Error::invalid(reason, self.violations)
    }

    /// INVALID_ARGUMENT with every violation collected so far, if any.
    pub fn finish(self, reason: &'static str) -> Result<()> {
        if self.violations.is_empty() { Ok(()) } else { Err(Error::invalid(reason, self.violations)) }
    }
}

/// Domain time to a protobuf timestamp.
pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.0.div_euclid(1_000_000),
        nanos: (t.0.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Adds a prefix to the paths of an error's violations (storage names fields of the
/// resource; the request nests the resource under a field).
pub fn nest(mut e: Error, prefix: &str) -> Error {
    for v in &mut e.violations {
        v.field = format!("{prefix}{}", v.field);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_bad_field() {
        let mut f = Fields::new();
        assert!(f.id("a", "Bad Id").is_none());
        assert!(f.date("b", "2026-02-30").is_none());
        assert!(f.date("c", "").is_none());
        assert_eq!(f.optional_date("d", ""), Some(None));
        assert!(f.enumeration("e", 0, |_| Some(()), "X").is_none());
        assert!(f.enumeration("e2", 99, |v| (v == 1).then_some(()), "X").is_none());
        assert!(f.name("g", "agencies/", "agencies").is_none());
        assert_eq!(f.name("h", "agencies/nhs-a", "agencies").unwrap().as_str(), "nhs-a");
        let paths: Vec<_> = f.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(paths, ["a", "b", "c", "e", "e2", "g"]);
    }

    #[test]
    fn timestamps_split_micros() {
        let t = timestamp(Timestamp(1_700_000_000_123_456));
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_456_000));
        let before_epoch = timestamp(Timestamp(-1));
        assert_eq!((before_epoch.seconds, before_epoch.nanos), (-1, 999_999_000));
    }
}
