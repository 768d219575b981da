//! OAuth2 access tokens: JWTs verified against the keys of a JWKS file.
//!
//! Only RS256, ES256 and EdDSA are accepted, and each key only with the algorithm of
//! its own type (a key's `alg`, or the one its `kty`/`crv` implies), so `alg: none`
//! and HMAC-with-a-public-key tokens cannot verify. `exp`, `iss`, `aud` and `sub`
//! are required, `nbf` is honoured, with 60 s of leeway for clock skew. The key is
//! chosen by the token's `kid`.
//!
//! The JWKS file is re-read when it changes (checked every second, and at once when a
//! token names an unknown `kid`), so keys rotate without a restart. A verified token
//! is remembered by its SHA-256 until it expires, so a caller that reuses its token
//! pays for the signature check once; the memory is cleared whenever the keys change.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::{
    domain::{
        Id,
        access::{Principal, Role},
    },
    error::{Error, reason},
};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// The only algorithms accepted.
const ALLOWED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Verified tokens remembered at most; past this the memory is cleared and refills.
const CACHE_ENTRIES: usize = 10_000;

/// How often the JWKS file is checked for changes.
pub const JWKS_POLL: Duration = Duration::from_secs(1);

/// Where the keys come from and what a token must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub jwks: PathBuf,
    pub issuer: String,
    pub audience: String,
}

/// The claims the service reads.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    agency_id: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// One usable key: how to verify with it, and with which algorithm only.
struct Key {
    decoding: DecodingKey,
    algorithm: Algorithm,
}

/// What identifies a version of the JWKS file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp { modified: meta.modified().ok(), len: meta.len() })
}

struct Keys {
    by_kid: HashMap<String, Key>,
    stamp: Stamp,
}

/// A verified token, remembered by its SHA-256: its principal, and until when it
/// holds (Unix seconds: `exp` plus the leeway).
type Verified = (Arc<Principal>, u64);

/// Verifies bearer tokens.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: RwLock<Arc<Keys>>,
    /// Serialises reloads, so one change is read once.
    reloading: Mutex<()>,
    verified: RwLock<HashMap<[u8; 32], Verified>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The algorithm a JWK may be used with: its declared `alg` if it has one, else the
/// one its key type implies. `None` for keys of any other type or algorithm.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        // HMAC secrets and every other key type are never accepted.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(declared) => {
            let declared = match declared {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            (declared == implied).then_some(declared)
        }
    }
}

/// Parses a JWKS document into the keys that may verify tokens. Keys without a `kid`,
/// meant for encryption, or of another algorithm are left out (and logged).
fn parse_jwks(text: &str) -> anyhow::Result<HashMap<String, Key>> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            warn!("a JWKS key without a kid is ignored");
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            warn!(%kid, "a JWKS key not meant for signatures is ignored");
            continue;
        }
        let Some(algorithm) = key_algorithm(jwk) else {
            warn!(%kid, "a JWKS key that is not RS256, ES256 or EdDSA is ignored");
            continue;
        };
        let decoding =
            DecodingKey::from_jwk(jwk).map_err(|e| anyhow::anyhow!("JWKS key {kid:?} is not usable: {e}"))?;
        keys.insert(kid, Key { decoding, algorithm });
    }
    Ok(keys)
}

fn read_keys(path: &Path) -> anyhow::Result<Keys> {
    let before = stamp(path).map_err(|e| anyhow::anyhow!("reading the JWKS file {}: {e}", path.display()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the JWKS file {}: {e}", path.display()))?;
    let by_kid = parse_jwks(&text).map_err(|e| e.context(format!("the JWKS file {}", path.display())))?;
    Ok(Keys { by_kid, stamp: before })
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn invalid(why: &str) -> Error {
    Error::unauthenticated(reason::TOKEN_INVALID, format!("the bearer token is not valid: {why}"))
}

impl JwtVerifier {
    /// Reads the JWKS file; fails if it cannot be read or holds no usable key.
    pub fn new(settings: JwtSettings) -> anyhow::Result<JwtVerifier> {
        let keys = read_keys(&settings.jwks)?;
        if keys.by_kid.is_empty() {
            anyhow::bail!(
                "the JWKS file {} holds no RS256, ES256 or EdDSA signing key with a kid",
                settings.jwks.display()
            );
        }
        info!(jwks = %settings.jwks.display(), keys = keys.by_kid.len(), "JWT keys loaded");
        Ok(JwtVerifier {
            settings,
            keys: RwLock::new(Arc::new(keys)),
            reloading: Mutex::new(()),
            verified: RwLock::new(HashMap::new()),
        })
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the JWKS file if it changed since it was read. A file that cannot be
    /// read or parsed leaves the current keys in place.
    pub fn reload_if_changed(&self) {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.keys();
        match stamp(&self.settings.jwks) {
            Ok(s) if s == current.stamp => {}
            Ok(_) => match read_keys(&self.settings.jwks) {
                Ok(keys) => {
                    info!(keys = keys.by_kid.len(), "JWKS file changed: keys reloaded");
                    *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                    // A removed key must stop working at once.
                    self.verified.write().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Err(e) => warn!(
                    error = format!("{e:#}"),
                    "JWKS file changed but cannot be used; keeping the old keys"
                ),
            },
            Err(e) => {
                warn!(error = %e, jwks = %self.settings.jwks.display(), "cannot read the JWKS file; keeping the old keys")
            }
        }
    }

    /// The principal a bearer token stands for, or UNAUTHENTICATED with the reason.
    pub fn verify(&self, token: &str) -> Result<Arc<Principal>, Error> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some((principal, until)) = self.verified.read().unwrap_or_else(|p| p.into_inner()).get(&digest)
            && now <= *until
        {
            return Ok(principal.clone());
        }
        let (principal, exp) = self.verify_uncached(token)?;
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= CACHE_ENTRIES {
            verified.clear();
        }
        verified.insert(digest, (principal.clone(), exp.saturating_add(LEEWAY_SECS)));
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str) -> Result<(Arc<Principal>, u64), Error> {
        // The header is read only to choose the key; nothing in it is trusted.
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            debug!(error = %e, "undecodable token header");
            invalid("malformed, or its algorithm is not RS256, ES256 or EdDSA")
        })?;
        if !ALLOWED.contains(&header.alg) {
            return Err(invalid("its algorithm is not RS256, ES256 or EdDSA"));
        }
        let kid = header.kid.ok_or_else(|| invalid("its header names no key (kid)"))?;
        let mut keys = self.keys();
        if !keys.by_kid.contains_key(&kid) {
            self.reload_if_changed();
            keys = self.keys();
        }
        let key = keys.by_kid.get(&kid).ok_or_else(|| {
            Error::unauthenticated(
                reason::TOKEN_UNKNOWN_KEY,
                "the bearer token is signed with an unknown key (kid)",
            )
        })?;
        if key.algorithm != header.alg {
            return Err(invalid("its algorithm does not match its key"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => {
                Error::unauthenticated(reason::TOKEN_EXPIRED, "the bearer token has expired")
            }
            ErrorKind::ImmatureSignature => {
                Error::unauthenticated(reason::TOKEN_NOT_YET_VALID, "the bearer token is not valid yet (nbf)")
            }
            ErrorKind::InvalidIssuer => {
                Error::unauthenticated(reason::TOKEN_WRONG_ISSUER, "the bearer token has another issuer")
            }
            ErrorKind::InvalidAudience => Error::unauthenticated(
                reason::TOKEN_WRONG_AUDIENCE,
                "the bearer token is meant for another audience",
            ),
            ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => Error::unauthenticated(
                reason::TOKEN_INVALID_CLAIMS,
                format!("the bearer token's {c} claim is missing or malformed"),
            ),
            ErrorKind::Json(_) => Error::unauthenticated(
                reason::TOKEN_INVALID_CLAIMS,
                "the bearer token's claims are malformed",
            ),
            other => {
                debug!(error = ?other, "token verification failed");
                invalid("its signature does not verify")
            }
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(Error::unauthenticated(
                reason::TOKEN_INVALID_CLAIMS,
                "the bearer token's sub is empty",
            ));
        }
        let agency = match claims.agency_id.as_deref() {
            None => None,
            Some(a) => Some(Id::parse(a).map_err(|e| {
                Error::unauthenticated(
                    reason::TOKEN_INVALID_CLAIMS,
                    format!("the bearer token's agency_id {e}"),
                )
            })?),
        };
        // Tokens from a shared identity provider may carry roles of other services.
        let roles: BTreeSet<Role> = claims.roles.iter().filter_map(|r| r.parse().ok()).collect();
        Ok((Arc::new(Principal::new(claims.sub, agency, roles)), claims.exp))
    }

    /// Checks the JWKS file for changes every [`JWKS_POLL`], for as long as the
    /// verifier lives.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(JWKS_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(verifier) = weak.upgrade() else { return };
                // File I/O off the async threads.
                if tokio::task::spawn_blocking(move || verifier.reload_if_changed()).await.is_err() {
                    return;
                }
            }
        })
    }
}
