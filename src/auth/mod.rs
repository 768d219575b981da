//! Authentication: who is calling. Exactly two ways, both ending in one
//! [`Principal`]: an OAuth2 access token (JWT) in `authorization: Bearer <token>`, or
//! a client certificate verified by the TLS handshake. The identity layer
//! (`grpc/layers.rs`) calls [`Authenticator::authenticate`] once per call.

pub mod dev;
pub mod jwt;
pub mod mtls;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::{
    domain::access::{Principal, Role},
    error::{Error, reason},
};

/// Certificates remembered at most (by their SHA-256), so a connection's requests
/// parse its certificate once.
const CERTIFICATE_CACHE_ENTRIES: usize = 10_000;

/// How callers authenticate, built from the settings at start.
#[derive(Debug)]
pub struct Authenticator {
    jwt: Option<Arc<jwt::JwtVerifier>>,
    /// The roles of certificate callers, when client certificates are accepted.
    mtls_roles: Option<BTreeSet<Role>>,
    certificates: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
    local_development: Arc<Principal>,
}

impl Authenticator {
    /// No authentication: every caller is the local-development principal.
    pub fn disabled() -> Authenticator {
        Authenticator::new(None, None)
    }

    pub fn new(jwt: Option<Arc<jwt::JwtVerifier>>, mtls_roles: Option<BTreeSet<Role>>) -> Authenticator {
        Authenticator {
            jwt,
            mtls_roles,
            certificates: RwLock::new(HashMap::new()),
            local_development: Arc::new(Principal::local_development()),
        }
    }

    /// Whether any authentication method is configured.
    pub fn is_enabled(&self) -> bool {
        self.jwt.is_some() || self.mtls_roles.is_some()
    }

    /// The caller of a request with these headers and, over mutual TLS, this
    /// verified client certificate chain (leaf first). UNAUTHENTICATED, with the
    /// reason, when the credentials are missing or fail any check.
    pub fn authenticate<C: AsRef<[u8]>>(
        &self,
        headers: &HeaderMap,
        peer_certs: Option<&[C]>,
    ) -> Result<Arc<Principal>, Error> {
        if !self.is_enabled() {
            return Ok(self.local_development.clone());
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Error::unauthenticated(
                        reason::CREDENTIALS_MALFORMED,
                        "the authorization header must be `Bearer <token>`",
                    )
                })?;
            let Some(jwt) = &self.jwt else {
                return Err(Error::unauthenticated(
                    reason::TOKEN_INVALID,
                    "this server does not accept bearer tokens; authenticate with a client certificate",
                ));
            };
            return jwt.verify(token);
        }
        if let (Some(roles), Some(leaf)) = (&self.mtls_roles, peer_certs.and_then(|c| c.first())) {
            return self.certificate_principal(leaf.as_ref(), roles);
        }
        Err(Error::unauthenticated(
            reason::CREDENTIALS_MISSING,
            match (&self.jwt, &self.mtls_roles) {
                (Some(_), Some(_)) => "no credentials: send a bearer token or a client certificate",
                (Some(_), None) => "no credentials: send `authorization: Bearer <token>`",
                _ => "no credentials: connect with a client certificate",
            },
        ))
    }

    fn certificate_principal(&self, der: &[u8], roles: &BTreeSet<Role>) -> Result<Arc<Principal>, Error> {
        let digest: [u8; 32] = Sha256::digest(der).into();
        if let Some(p) = self.certificates.read().unwrap_or_else(|p| p.into_inner()).get(&digest) {
            return Ok(p.clone());
        }
        let principal = mtls::principal_of_certificate(der, roles)
            .map(Arc::new)
            .map_err(|e| Error::unauthenticated(reason::CERTIFICATE_UNRECOGNISED, e.to_string()))?;
        let mut cache = self.certificates.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CERTIFICATE_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(digest, principal.clone());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn jwt_only() -> (Authenticator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = dev::SigningKey::generate(jsonwebtoken::Algorithm::EdDSA, "k").unwrap();
        std::fs::write(dir.path().join("jwks.json"), dev::jwks(&[&key]).unwrap()).unwrap();
        let settings =
            jwt::JwtSettings { jwks: dir.path().join("jwks.json"), issuer: "i".into(), audience: "a".into() };
        (Authenticator::new(Some(Arc::new(jwt::JwtVerifier::new(settings).unwrap())), None), dir)
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn the_authorization_header_must_be_a_bearer_token() {
        let (auth, _dir) = jwt_only();
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token-without-scheme"] {
            let e = auth.authenticate::<Vec<u8>>(&headers(bad), None).unwrap_err();
            assert_eq!((e.code, e.reason), (Code::Unauthenticated, reason::CREDENTIALS_MALFORMED), "{bad}");
        }
        let e = auth.authenticate::<Vec<u8>>(&HeaderMap::new(), None).unwrap_err();
        assert_eq!(e.reason, reason::CREDENTIALS_MISSING);
        // The scheme is case-insensitive (RFC 7235); the token itself is then checked.
        let e = auth.authenticate::<Vec<u8>>(&headers("bearer x.y.z"), None).unwrap_err();
        assert_eq!(e.reason, reason::TOKEN_INVALID);
    }

    #[test]
    fn without_authentication_everyone_is_the_local_developer() {
        let p = Authenticator::disabled().authenticate::<Vec<u8>>(&HeaderMap::new(), None).unwrap();
        assert_eq!(p.client_id, crate::domain::access::LOCAL_DEVELOPMENT_CLIENT);
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h","alg":"HS256"}]}"#).unwrap();
        let settings = jwt::JwtSettings { jwks: path, issuer: "i".into(), audience: "a".into() };
        assert!(jwt::JwtVerifier::new(settings).is_err(), "an HMAC secret is never a verification key");
    }
}
