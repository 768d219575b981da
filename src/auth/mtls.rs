//! Client certificates: with `--tls-client-ca`, the TLS handshake has already
//! verified the certificate chain; here its URI SAN `spiffe://<trust
//! domain>/agency/<agency_id>` says which agency the caller acts for.

use std::collections::BTreeSet;

use x509_parser::{extensions::GeneralName, prelude::FromDer};

use crate::domain::{
    Id,
    access::{Principal, Role},
};

/// Why a verified certificate authenticates nobody.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the client certificate cannot be read")]
    Unreadable,
    #[error("the client certificate has no URI SAN spiffe://<trust domain>/agency/<agency id>")]
    NoAgency,
    #[error("the client certificate names more than one agency")]
    SeveralAgencies,
}

/// The agency of a `spiffe://<trust domain>/agency/<agency id>` URI.
pub fn agency_of_spiffe_id(uri: &str) -> Option<Id> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (trust_domain, path) = rest.split_once('/')?;
    if trust_domain.is_empty() {
        return None;
    }
    Id::parse(path.strip_prefix("agency/")?).ok()
}

/// The principal of a client certificate (DER): client id the SPIFFE URI, agency from
/// it, and the roles configured for certificate callers.
pub fn principal_of_certificate(der: &[u8], roles: &BTreeSet<Role>) -> Result<Principal, CertificateError> {
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).map_err(|_| CertificateError::Unreadable)?;
    let san = cert.subject_alternative_name().map_err(|_| CertificateError::Unreadable)?;
    let mut found: Vec<(&str, Id)> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => agency_of_spiffe_id(uri).map(|agency| (*uri, agency)),
            _ => None,
        })
        .collect();
    match found.len() {
        0 => Err(CertificateError::NoAgency),
        1 => {
            let (uri, agency) = found.remove(0);
            Ok(Principal::new(uri, Some(agency), roles.clone()))
        }
        _ => Err(CertificateError::SeveralAgencies),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_name_an_agency() {
        assert_eq!(
            agency_of_spiffe_id("spiffe://pm.example/agency/nhs-a"),
            Some(Id::parse("nhs-a").unwrap())
        );
        for bad in [
            "spiffe:///agency/nhs-a",
            "spiffe://pm.example/agency/",
            "spiffe://pm.example/agency/NHS_A",
            "spiffe://pm.example/agency/nhs-a/extra",
            "spiffe://pm.example/service/nhs-a",
            "https://pm.example/agency/nhs-a",
        ] {
            assert_eq!(agency_of_spiffe_id(bad), None, "{bad}");
        }
    }
}
