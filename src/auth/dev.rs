//! Credentials for trying the secure mode locally, and for tests: a certificate
//! authority, a server certificate for 127.0.0.1/localhost, client certificates for
//! agencies, JWT signing keys with their JWKS, and tokens. Made fresh every time;
//! nothing here is meant for production, where an identity provider and a real CA
//! issue these.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};

use crate::domain::access::Role;

/// A JWT signing key and the `kid` its public half is published under.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish()
    }
}

/// Parses `EdDSA`, `ES256` or `RS256`.
pub fn parse_algorithm(s: &str) -> anyhow::Result<Algorithm> {
    match s {
        "EdDSA" => Ok(Algorithm::EdDSA),
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        other => anyhow::bail!("unsupported signing algorithm {other:?}: use EdDSA, ES256 or RS256"),
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate(algorithm: Algorithm, kid: impl Into<String>) -> anyhow::Result<SigningKey> {
        let pem = match algorithm {
            Algorithm::EdDSA => KeyPair::generate_for(&rcgen::PKCS_ED25519)?.serialize_pem(),
            Algorithm::ES256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem(),
            Algorithm::RS256 => {
                use rsa::{Generate, pkcs1::EncodeRsaPrivateKey};
                let key = rsa::PrivateKey::try_generate()
                    .map_err(|e| anyhow::anyhow!("generating an RSA key: {e}"))?;
                key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                    .map_err(|e| anyhow::anyhow!("encoding an RSA key: {e}"))?
                    .to_string()
            }
            other => anyhow::bail!("unsupported signing algorithm {other:?}"),
        };
        SigningKey::from_pem(algorithm, kid, &pem)
    }

    /// A key from its PEM form (PKCS#8 for EdDSA and ES256, PKCS#1 for RS256).
    pub fn from_pem(algorithm: Algorithm, kid: impl Into<String>, pem: &str) -> anyhow::Result<SigningKey> {
        let encoding = match algorithm {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            other => anyhow::bail!("unsupported signing algorithm {other:?}"),
        }
        .context("reading the signing key")?;
        Ok(SigningKey { kid: kid.into(), algorithm, encoding, pem: pem.to_string() })
    }

    /// The private key, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The public key as a JWK, with its `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> anyhow::Result<Jwk> {
        use base64::Engine;
        use jsonwebtoken::jwk::{
            AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
            EllipticCurveKeyType, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
        };
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let algorithm = match self.algorithm {
            // jsonwebtoken derives these only from PKCS#8 v1 keys; ring writes v2, so
            // the public key comes from the key pair itself.
            Algorithm::EdDSA => {
                let pair = KeyPair::from_pem(&self.pem).context("reading the EdDSA key")?;
                AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: b64(pair.public_key_raw()),
                })
            }
            Algorithm::ES256 => {
                let pair = KeyPair::from_pem(&self.pem).context("reading the ES256 key")?;
                // An uncompressed point: 0x04, then x and y.
                let point = pair.public_key_raw();
                anyhow::ensure!(point.len() == 65 && point[0] == 4, "unexpected P-256 public key encoding");
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64(&point[1..33]),
                    y: b64(&point[33..]),
                })
            }
            _ => {
                Jwk::from_encoding_key(&self.encoding, self.algorithm)
                    .context("deriving the public JWK")?
                    .algorithm
            }
        };
        let key_algorithm = match self.algorithm {
            Algorithm::EdDSA => KeyAlgorithm::EdDSA,
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => KeyAlgorithm::RS256,
        };
        Ok(Jwk {
            common: CommonParameters {
                key_id: Some(self.kid.clone()),
                key_algorithm: Some(key_algorithm),
                public_key_use: Some(PublicKeyUse::Signature),
                ..Default::default()
            },
            algorithm,
        })
    }

    /// Signs `claims` with this key, its `kid` in the header.
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("signing a token")
    }
}

/// A JWKS document publishing these keys.
pub fn jwks(keys: &[&SigningKey]) -> anyhow::Result<String> {
    let keys = keys.iter().map(|k| k.jwk()).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(serde_json::to_string_pretty(&jsonwebtoken::jwk::JwkSet { keys })?)
}

/// The claims of an access token as the service reads them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<String>,
    pub roles: Vec<String>,
}

impl AccessClaims {
    /// Claims valid from now for `ttl`.
    pub fn new(
        sub: &str,
        issuer: &str,
        audience: &str,
        agency: Option<&str>,
        roles: &[Role],
        ttl: Duration,
    ) -> Self {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        AccessClaims {
            sub: sub.to_string(),
            iss: issuer.to_string(),
            aud: audience.to_string(),
            exp: now + ttl.as_secs(),
            iat: now,
            nbf: None,
            agency_id: agency.map(str::to_string),
            roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
        }
    }
}

/// A development certificate authority that signs server and client certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct CertifiedPem {
    pub cert: String,
    pub key: String,
}

/// The trust domain of the development client certificates' SPIFFE ids.
pub const DEV_TRUST_DOMAIN: &str = "partnership-metrics.local";

impl DevCa {
    pub fn new(common_name: &str) -> anyhow::Result<DevCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(DevCa { pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// The CA certificate, PEM: what clients trust for the server, and what the
    /// server trusts for client certificates.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for 127.0.0.1, ::1 and localhost (and `extra_names`).
    pub fn server_certificate(&self, extra_names: &[String]) -> anyhow::Result<CertifiedPem> {
        let mut names = vec!["localhost".to_string()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.distinguished_name.push(DnType::CommonName, "partnership-metrics");
        self.sign(params)
    }

    /// A client certificate with these URI SANs (e.g. a SPIFFE id naming an agency).
    pub fn client_certificate(&self, common_name: &str, uris: &[String]) -> anyhow::Result<CertifiedPem> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for uri in uris {
            params.subject_alt_names.push(SanType::URI(uri.as_str().try_into()?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name.push(DnType::CommonName, common_name);
        self.sign(params)
    }

    /// A client certificate for an agency: URI SAN `spiffe://<trust domain>/agency/<id>`.
    pub fn agency_certificate(&self, agency: &str) -> anyhow::Result<CertifiedPem> {
        self.client_certificate(agency, &[format!("spiffe://{DEV_TRUST_DOMAIN}/agency/{agency}")])
    }

    fn sign(&self, params: CertificateParams) -> anyhow::Result<CertifiedPem> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedPem { cert: cert.pem(), key: key.serialize_pem() })
    }
}

/// What `dev-credentials` records about its signing key, so `token` can mint more.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevTokenSettings {
    pub issuer: String,
    pub audience: String,
    pub kid: String,
    pub algorithm: String,
}

/// The issuer and audience development tokens carry.
pub const DEV_ISSUER: &str = "https://dev-idp.partnership-metrics.local";
pub const DEV_AUDIENCE: &str = "partnership-metrics";

/// File names inside a `dev-credentials` directory.
pub mod files {
    pub const CA_CERT: &str = "ca.pem";
    pub const SERVER_CERT: &str = "server.pem";
    pub const SERVER_KEY: &str = "server.key";
    pub const JWKS: &str = "jwks.json";
    pub const SIGNING_KEY: &str = "jwt-signing.key";
    pub const TOKEN_SETTINGS: &str = "token-settings.json";
    pub const TOKENS_DIR: &str = "tokens";
    pub const CLIENTS_DIR: &str = "clients";
}

fn write(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

/// Tokens `dev-credentials` writes: one per role that acts for no agency.
const AGENCYLESS_ROLES: [Role; 3] = [Role::Registrar, Role::Analyst, Role::Auditor];

/// Writes a fresh set of development credentials into `dir`: the CA, a server
/// certificate, a JWKS with one EdDSA key and its private half, tokens valid for
/// `ttl` for the registrar, analyst and auditor roles and for a submitter and reader
/// of each of `agencies`, and a client certificate for each of `agencies`. The server
/// certificate names localhost and `server_names`. Returns the files written.
pub fn write_dev_credentials(
    dir: &Path,
    agencies: &[String],
    server_names: &[String],
    ttl: Duration,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join(files::TOKENS_DIR))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(dir.join(files::CLIENTS_DIR))?;
    let mut written = Vec::new();
    let mut put = |name: String, contents: &str, secret: bool| -> anyhow::Result<()> {
        let path = dir.join(name);
        write(&path, contents, secret)?;
        written.push(path);
        Ok(())
    };
    let ca = DevCa::new("Partnership Metrics development CA")?;
    put(files::CA_CERT.into(), ca.pem(), false)?;
    let server = ca.server_certificate(server_names)?;
    put(files::SERVER_CERT.into(), &server.cert, false)?;
    put(files::SERVER_KEY.into(), &server.key, true)?;

    let key = SigningKey::generate(Algorithm::EdDSA, "dev-1")?;
    put(files::JWKS.into(), &jwks(&[&key])?, false)?;
    put(files::SIGNING_KEY.into(), key.pem(), true)?;
    let settings = DevTokenSettings {
        issuer: DEV_ISSUER.into(),
        audience: DEV_AUDIENCE.into(),
        kid: key.kid.clone(),
        algorithm: "EdDSA".into(),
    };
    put(files::TOKEN_SETTINGS.into(), &serde_json::to_string_pretty(&settings)?, false)?;

    let token = |sub: String, agency: Option<&str>, role: Role| {
        key.sign(&AccessClaims::new(&sub, DEV_ISSUER, DEV_AUDIENCE, agency, &[role], ttl))
    };
    for role in AGENCYLESS_ROLES {
        put(format!("{}/{role}.jwt", files::TOKENS_DIR), &token(format!("dev-{role}"), None, role)?, true)?;
    }
    for agency in agencies {
        for role in [Role::Submitter, Role::Reader] {
            let t = token(format!("dev-{agency}-{role}"), Some(agency), role)?;
            put(format!("{}/{agency}-{role}.jwt", files::TOKENS_DIR), &t, true)?;
        }
        let cert = ca.agency_certificate(agency)?;
        put(format!("{}/{agency}.pem", files::CLIENTS_DIR), &cert.cert, false)?;
        put(format!("{}/{agency}.key", files::CLIENTS_DIR), &cert.key, true)?;
    }
    Ok(written)
}

/// Mints a token with the signing key of a `dev-credentials` directory.
pub fn mint_dev_token(
    dir: &Path,
    sub: &str,
    agency: Option<&str>,
    roles: &[Role],
    ttl: Duration,
) -> anyhow::Result<String> {
    let settings_path = dir.join(files::TOKEN_SETTINGS);
    let settings: DevTokenSettings = serde_json::from_str(
        &std::fs::read_to_string(&settings_path)
            .with_context(|| format!("reading {}", settings_path.display()))?,
    )
    .with_context(|| format!("reading {}", settings_path.display()))?;
    let key_path = dir.join(files::SIGNING_KEY);
    let pem =
        std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let key = SigningKey::from_pem(parse_algorithm(&settings.algorithm)?, settings.kid, &pem)?;
    key.sign(&AccessClaims::new(sub, &settings.issuer, &settings.audience, agency, roles, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_what_its_jwk_verifies() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let key = SigningKey::generate(alg, "k").unwrap();
            let claims =
                AccessClaims::new("c", "i", "a", Some("x"), &[Role::Reader], Duration::from_secs(60));
            let token = key.sign(&claims).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&key.jwk().unwrap()).unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.set_audience(&["a"]);
            let got = jsonwebtoken::decode::<AccessClaims>(&token, &decoding, &v).unwrap();
            assert_eq!(got.claims.agency_id.as_deref(), Some("x"));
            let again = SigningKey::from_pem(alg, "k", key.pem()).unwrap();
            assert!(
                jsonwebtoken::decode::<AccessClaims>(&again.sign(&claims).unwrap(), &decoding, &v).is_ok()
            );
        }
    }
}
