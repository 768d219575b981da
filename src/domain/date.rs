//! Calendar dates of the methodology: 1900-01-01 to 9999-12-31, written `YYYY-MM-DD`.
//!
//! A small own type instead of a date crate: the service needs parsing of exactly one
//! format, comparison, month arithmetic for the restructuring windows and ISO output,
//! and every one of those must be exact and identical on every backend.

use std::fmt;

/// A valid calendar date in 1900-01-01 ..= 9999-12-31. Ordering is chronological.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    // Field order matters: the derived ordering compares year, then month, then day.
    year: u16,
    month: u8,
    day: u8,
}

/// Why a date string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("must be a date written YYYY-MM-DD")]
    Format,
    #[error("must be a real calendar date")]
    NoSuchDay,
    #[error("must be between 1900-01-01 and 9999-12-31")]
    OutOfRange,
}

pub const MIN_YEAR: u16 = 1900;
pub const MAX_YEAR: u16 = 9999;

impl Date {
    pub const MIN: Date = Date { year: MIN_YEAR, month: 1, day: 1 };
    pub const MAX: Date = Date { year: MAX_YEAR, month: 12, day: 31 };

    /// Builds a date from its parts, checking the calendar and the range.
    pub fn from_ymd(year: u16, month: u8, day: u8) -> Result<Date, DateError> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(DateError::OutOfRange);
        }
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(DateError::NoSuchDay);
        }
        Ok(Date { year, month, day })
    }

    /// Parses exactly `YYYY-MM-DD` (ASCII digits, no sign, no whitespace).
    pub fn parse(s: &str) -> Result<Date, DateError> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(DateError::Format);
        }
        let year = digits(&b[0..4]).ok_or(DateError::Format)?;
        let month = digits(&b[5..7]).ok_or(DateError::Format)?;
        let day = digits(&b[8..10]).ok_or(DateError::Format)?;
        // Checked before the calendar so that 1899-02-30 reads as out of range, the
        // more useful of the two messages.
        let year = u16::try_from(year).map_err(|_| DateError::Format)?;
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(DateError::OutOfRange);
        }
        Date::from_ymd(year, month as u8, day as u8)
    }

    pub fn year(self) -> u16 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn day(self) -> u8 {
        self.day
    }

    /// The first day of this date's month.
    pub fn first_of_month(self) -> Date {
        Date { day: 1, ..self }
    }

    /// The first day of the month `months` months before this date's month, or `None`
    /// when that is before 1900-01.
    pub fn first_of_month_minus(self, months: u32) -> Option<Date> {
        let index = u32::from(self.year) * 12 + u32::from(self.month) - 1;
        let index = index.checked_sub(months)?;
        let year = u16::try_from(index / 12).ok()?;
        let month = (index % 12) as u8 + 1;
        Date::from_ymd(year, month, 1).ok()
    }

    /// The day before, or `None` for 1900-01-01.
    pub fn pred(self) -> Option<Date> {
        if self.day > 1 {
            return Some(Date { day: self.day - 1, ..self });
        }
        let (year, month) =
            if self.month > 1 { (self.year, self.month - 1) } else { (self.year.checked_sub(1)?, 12) };
        Date::from_ymd(year, month, days_in_month(year, month)).ok()
    }

    /// Days since 1970-01-01 (negative before it), for compact storage and arithmetic.
    pub fn to_days(self) -> i32 {
        // Howard Hinnant's days_from_civil.
        let y = i32::from(self.year) - i32::from(self.month <= 2);
        let m = i32::from(self.month);
        let d = i32::from(self.day);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

impl Date {
    /// The date `days` after 1970-01-01, or `None` outside 1900-01-01..=9999-12-31.
    pub fn from_days(days: i32) -> Option<Date> {
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i32::from(month <= 2);
        Date::from_ymd(u16::try_from(year).ok()?, month as u8, day as u8).ok()
    }
}

pub fn is_leap_year(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Date::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in ["1900-01-01", "2026-09-30", "2024-02-29", "9999-12-31"] {
            assert_eq!(Date::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        let cases = [
            ("", DateError::Format),
            ("2026-9-30", DateError::Format),
            ("2026-09-30 ", DateError::Format),
            (" 2026-09-30", DateError::Format),
            ("2026/09/30", DateError::Format),
            ("+026-09-30", DateError::Format),
            ("2026-02-30", DateError::NoSuchDay),
            ("2025-02-29", DateError::NoSuchDay),
            ("1900-02-29", DateError::NoSuchDay),
            ("2026-13-01", DateError::NoSuchDay),
            ("2026-00-10", DateError::NoSuchDay),
            ("2026-04-31", DateError::NoSuchDay),
            ("1899-12-31", DateError::OutOfRange),
            ("0000-01-01", DateError::OutOfRange),
        ];
        for (s, want) in cases {
            assert_eq!(Date::parse(s), Err(want), "{s:?}");
        }
    }

    #[test]
    fn orders_chronologically() {
        let a = Date::parse("2025-12-31").unwrap();
        let b = Date::parse("2026-01-01").unwrap();
        assert!(a < b);
        assert_eq!(b.pred(), Some(a));
        assert_eq!(Date::MIN.pred(), None);
    }

    #[test]
    fn month_arithmetic_crosses_years() {
        let d = Date::parse("2026-09-30").unwrap();
        assert_eq!(d.first_of_month_minus(11).unwrap().to_string(), "2025-10-01");
        assert_eq!(d.first_of_month_minus(23).unwrap().to_string(), "2024-10-01");
        assert_eq!(Date::parse("1900-03-15").unwrap().first_of_month_minus(3), None);
    }

    #[test]
    fn days_round_trip_over_the_whole_range() {
        for d in
            [Date::MIN, Date::MAX, Date::parse("2024-02-29").unwrap(), Date::parse("1970-01-01").unwrap()]
        {
            assert_eq!(Date::from_days(d.to_days()), Some(d));
        }
        let mut d = Date::parse("1999-12-25").unwrap();
        for _ in 0..800 {
            let next = Date::from_days(d.to_days() + 1).unwrap();
            assert!(next > d);
            assert_eq!(next.pred(), Some(d));
            d = next;
        }
        assert_eq!(Date::from_days(Date::MIN.to_days() - 1), None);
        assert_eq!(Date::from_days(Date::MAX.to_days() + 1), None);
    }

    #[test]
    fn days_since_epoch_match_known_values() {
        assert_eq!(Date::parse("1970-01-01").unwrap().to_days(), 0);
        assert_eq!(Date::parse("2000-03-01").unwrap().to_days(), 11_017);
        assert_eq!(Date::parse("1900-01-01").unwrap().to_days(), -25_567);
    }
}
