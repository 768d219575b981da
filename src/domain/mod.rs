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

/// A point in time, in microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }
}
