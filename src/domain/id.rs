//! Caller-chosen identifiers of agencies, partnerships, contracts, teams, responses
//! and events: 1 to 63 characters from `a-z`, `0-9` and `-`, so other systems can use
//! their own codes and ids can sit in resource names and record keys unescaped.

use std::{fmt, sync::Arc};

/// A well-formed id. Cheap to clone: ids are copied into every record and report.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is required")]
    Empty,
    #[error("must be at most 63 characters")]
    TooLong,
    #[error("must contain only lower-case letters a-z, digits and hyphens")]
    BadCharacter,
}

pub const MAX_ID_LEN: usize = 63;

impl Id {
    pub fn parse(s: &str) -> Result<Id, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(IdError::BadCharacter);
        }
        Ok(Id(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_codes_of_other_systems() {
        for ok in ["a", "nhs-a", "rx1-0042", "-", &"a".repeat(63)] {
            assert_eq!(Id::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        assert_eq!(Id::parse(""), Err(IdError::Empty));
        assert_eq!(Id::parse(&"a".repeat(64)), Err(IdError::TooLong));
        for bad in ["NHS-A", "nhs_a", "nhs a", "nhs/a", "é", "a.b", "a:b"] {
            assert_eq!(Id::parse(bad), Err(IdError::BadCharacter), "{bad:?}");
        }
    }
}
