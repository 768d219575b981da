//! Request ids for idempotent writes (AIP-155).

use sha2::{Digest, Sha256};

/// A caller's idempotency key: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

pub const MAX_REQUEST_ID_LEN: usize = 128;

impl RequestId {
    /// `Ok(None)` for an empty id (no idempotency requested).
    pub fn parse(s: &str) -> Result<Option<RequestId>, &'static str> {
        if s.is_empty() {
            return Ok(None);
        }
        if s.len() > MAX_REQUEST_ID_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1 to 128 printable ASCII characters without spaces");
        }
        Ok(Some(RequestId(s.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the store remembers of an idempotent write: which method, under which id, and
/// a fingerprint of the request's content, so that a retry can be told from a reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub request_id: RequestId,
    pub method: &'static str,
    pub fingerprint: [u8; 32],
}

impl Idempotency {
    /// `content` must be a canonical encoding of the request: equal requests give equal
    /// bytes.
    pub fn new(request_id: RequestId, method: &'static str, content: &[u8]) -> Self {
        let fingerprint =
            Sha256::new().chain_update(method).chain_update([0]).chain_update(content).finalize();
        Idempotency { request_id, method, fingerprint: fingerprint.into() }
    }
}

/// How long request ids are remembered; documented in the contract as "at least 7
/// days".
pub const REQUEST_ID_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_printable_ascii() {
        assert_eq!(RequestId::parse(""), Ok(None));
        assert!(RequestId::parse("7f1c2a9e-0b7d-4c55-9b1e-3f0f0c2d1a00").unwrap().is_some());
        assert!(RequestId::parse(&"x".repeat(128)).unwrap().is_some());
        assert!(RequestId::parse(&"x".repeat(129)).is_err());
        assert!(RequestId::parse("has space").is_err());
        assert!(RequestId::parse("naïve").is_err());
    }

    #[test]
    fn fingerprint_separates_method_and_content() {
        let id = RequestId::parse("r1").unwrap().unwrap();
        let a = Idempotency::new(id.clone(), "CreateAgency", b"x");
        assert_eq!(a, Idempotency::new(id.clone(), "CreateAgency", b"x"));
        assert_ne!(a.fingerprint, Idempotency::new(id.clone(), "CreateAgency", b"y").fingerprint);
        assert_ne!(a.fingerprint, Idempotency::new(id, "CreatePartnership", b"x").fingerprint);
    }
}
