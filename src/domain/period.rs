//! Period identifiers (methodology section 1), in the DHIS2 forms `YYYY`, `YYYYQn`,
//! `YYYYMM` and `YYYYApril`.

use std::fmt;

use super::date::{Date, MAX_YEAR, MIN_YEAR, days_in_month};

/// The type of a period; the derived order is not meaningful, use [`PeriodType::months`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeriodType {
    Year,
    Quarter,
    Month,
    FinancialYearApril,
}

impl PeriodType {
    pub fn months(self) -> u8 {
        match self {
            PeriodType::Year | PeriodType::FinancialYearApril => 12,
            PeriodType::Quarter => 3,
            PeriodType::Month => 1,
        }
    }
}

/// A valid period. Equality is on the identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    year: u16,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Year,
    /// 1..=4
    Quarter(u8),
    /// 1..=12
    Month(u8),
    FinancialYearApril,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("must be a period identifier YYYY, YYYYQn, YYYYMM or YYYYApril")]
    Format,
    #[error("must be a period from 1900 to 9999 ending by 9999-12-31")]
    OutOfRange,
}

impl Period {
    /// Parses an identifier in full and byte for byte:
    /// `^[0-9]{4}(Q[1-4]|0[1-9]|1[0-2]|April)?$`, year 1900..=9999, ending by 9999-12-31.
    pub fn parse(s: &str) -> Result<Period, PeriodError> {
        let b = s.as_bytes();
        if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
            return Err(PeriodError::Format);
        }
        let year = b[..4].iter().fold(0u16, |acc, &c| acc * 10 + u16::from(c - b'0'));
        let kind = match &b[4..] {
            [] => Kind::Year,
            [b'Q', q @ b'1'..=b'4'] => Kind::Quarter(q - b'0'),
            [b'0', m @ b'1'..=b'9'] => Kind::Month(m - b'0'),
            [b'1', m @ b'0'..=b'2'] => Kind::Month(10 + m - b'0'),
            b"April" => Kind::FinancialYearApril,
            _ => return Err(PeriodError::Format),
        };
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) || (kind == Kind::FinancialYearApril && year == MAX_YEAR) {
            return Err(PeriodError::OutOfRange);
        }
        Ok(Period { year, kind })
    }

    pub fn period_type(self) -> PeriodType {
        match self.kind {
            Kind::Year => PeriodType::Year,
            Kind::Quarter(_) => PeriodType::Quarter,
            Kind::Month(_) => PeriodType::Month,
            Kind::FinancialYearApril => PeriodType::FinancialYearApril,
        }
    }

    pub fn months(self) -> u8 {
        self.period_type().months()
    }

    /// First day of the period.
    pub fn start(self) -> Date {
        let (year, month) = match self.kind {
            Kind::Year => (self.year, 1),
            Kind::Quarter(q) => (self.year, 3 * q - 2),
            Kind::Month(m) => (self.year, m),
            Kind::FinancialYearApril => (self.year, 4),
        };
        date(year, month, 1)
    }

    /// Last day of the period.
    pub fn end(self) -> Date {
        let (year, month) = match self.kind {
            Kind::Year => (self.year, 12),
            Kind::Quarter(q) => (self.year, 3 * q),
            Kind::Month(m) => (self.year, m),
            Kind::FinancialYearApril => (self.year + 1, 3),
        };
        date(year, month, days_in_month(year, month))
    }

    /// Whether `self` lies within `outer`: `start(outer) <= start(self)` and
    /// `end(self) <= end(outer)`.
    pub fn is_within(self, outer: Period) -> bool {
        outer.start() <= self.start() && self.end() <= outer.end()
    }

    /// Sort key for "latest": the later end date wins, on a tie the later start.
    /// Distinct periods never share a key.
    pub fn latest_key(self) -> (Date, Date) {
        (self.end(), self.start())
    }

    /// The next period of the same type, or `None` past 9999.
    pub fn succ(self) -> Option<Period> {
        let next = match self.kind {
            Kind::Year => Period { year: self.year + 1, kind: Kind::Year },
            Kind::FinancialYearApril => Period { year: self.year + 1, kind: Kind::FinancialYearApril },
            Kind::Quarter(4) => Period { year: self.year + 1, kind: Kind::Quarter(1) },
            Kind::Quarter(q) => Period { year: self.year, kind: Kind::Quarter(q + 1) },
            Kind::Month(12) => Period { year: self.year + 1, kind: Kind::Month(1) },
            Kind::Month(m) => Period { year: self.year, kind: Kind::Month(m + 1) },
        };
        Period::parse(&next.to_string()).ok()
    }
}

fn date(year: u16, month: u8, day: u8) -> Date {
    // Every period of a valid identifier has dates inside 1900-01-01..=9999-12-31, so
    // this cannot fail; the fallback keeps the function total without a panic.
    Date::from_ymd(year, month, day).unwrap_or(Date::MAX)
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Year => write!(f, "{:04}", self.year),
            Kind::Quarter(q) => write!(f, "{:04}Q{q}", self.year),
            Kind::Month(m) => write!(f, "{:04}{m:02}", self.year),
            Kind::FinancialYearApril => write!(f, "{:04}April", self.year),
        }
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Period::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    #[test]
    fn the_four_forms_and_their_dates() {
        let cases = [
            ("2026", PeriodType::Year, "2026-01-01", "2026-12-31"),
            ("2026Q3", PeriodType::Quarter, "2026-07-01", "2026-09-30"),
            ("202609", PeriodType::Month, "2026-09-01", "2026-09-30"),
            ("202602", PeriodType::Month, "2026-02-01", "2026-02-28"),
            ("2024Q1", PeriodType::Quarter, "2024-01-01", "2024-03-31"),
            ("2026April", PeriodType::FinancialYearApril, "2026-04-01", "2027-03-31"),
            ("1900", PeriodType::Year, "1900-01-01", "1900-12-31"),
            ("9999Q4", PeriodType::Quarter, "9999-10-01", "9999-12-31"),
            ("9998April", PeriodType::FinancialYearApril, "9998-04-01", "9999-03-31"),
        ];
        for (id, ty, start, end) in cases {
            let period = p(id);
            assert_eq!(period.to_string(), id);
            assert_eq!(period.period_type(), ty, "{id}");
            assert_eq!(period.start().to_string(), start, "{id}");
            assert_eq!(period.end().to_string(), end, "{id}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "2026-09",
            "2026Q5",
            "2026Q0",
            "202613",
            "202600",
            "2026q3",
            "2026APRIL",
            "2026april",
            " 2026",
            "2026 ",
            "2026\n",
            "+2026",
            "-2026",
            "10000",
            "20261",
            "2026Q",
            "2026Q12",
            "2026M09",
            "２０２６",
            "2026-Q3",
            "2026W01",
        ] {
            assert_eq!(Period::parse(bad), Err(PeriodError::Format), "{bad:?}");
        }
        for out in ["1899", "0000", "1899Q4", "9999April"] {
            assert_eq!(Period::parse(out), Err(PeriodError::OutOfRange), "{out:?}");
        }
    }

    #[test]
    fn within_follows_the_dates() {
        assert!(p("202609").is_within(p("2026Q3")));
        assert!(p("2026Q3").is_within(p("2026Q3")));
        assert!(p("2026Q3").is_within(p("2026")));
        assert!(!p("2026").is_within(p("2026Q3")));
        assert!(!p("2026April").is_within(p("2026")));
        assert!(!p("2026").is_within(p("2026April")));
        assert!(p("2026Q2").is_within(p("2026April")));
        assert!(!p("2026Q1").is_within(p("2026April")));
    }

    #[test]
    fn latest_prefers_later_end_then_later_start() {
        let mut ps = [p("2026"), p("2026Q4"), p("202612")];
        ps.sort_by_key(|x| x.latest_key());
        assert_eq!(ps.last().unwrap().to_string(), "202612");
        assert!(p("202609").latest_key() > p("2026Q3").latest_key());
    }

    #[test]
    fn succ_steps_within_a_type() {
        assert_eq!(p("2026Q4").succ().unwrap().to_string(), "2027Q1");
        assert_eq!(p("202612").succ().unwrap().to_string(), "202701");
        assert_eq!(p("2026April").succ().unwrap().to_string(), "2027April");
        assert_eq!(p("9999").succ(), None);
        assert_eq!(p("9998April").succ(), None);
    }
}
