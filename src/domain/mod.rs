//! Pure domain types: no I/O, no protobuf, no SQL. Values of these types are valid by
//! construction ("parse, don't validate").

pub mod access;
pub mod audit;
pub mod check;
pub mod date;
pub mod id;
pub mod idempotency;
pub mod period;
pub mod records;
pub mod registry;
pub mod submission;

pub use date::Date;
pub use id::Id;
pub use idempotency::{Idempotency, RequestId};
pub use period::{Period, PeriodType};

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000000Z");
        // 2026-12-01T21:35:02.123456Z
        assert_eq!(Timestamp(1_796_160_902_123_456).to_rfc3339(), "2026-12-01T21:35:02.123456Z");
    }
}

/// A point in time, in microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// As RFC 3339 in UTC with microseconds, e.g. `2026-12-01T21:35:02.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let micros = self.0.rem_euclid(1_000_000);
        let secs = self.0.div_euclid(1_000_000);
        let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let date = i32::try_from(days).ok().and_then(Date::from_days);
        match date {
            Some(d) => {
                format!("{d}T{:02}:{:02}:{:02}.{micros:06}Z", of_day / 3600, of_day % 3600 / 60, of_day % 60)
            }
            None => format!("{}us", self.0),
        }
    }

    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }
}
