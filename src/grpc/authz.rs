//! Authorisation, in one place: the permission every RPC needs (the policy table
//! below, consulted by the identity layer before the request is read), and the
//! object-level checks handlers make with the granted scope before they read or
//! write anything (AIP-211: a caller who may not see a partnership is refused
//! whether or not it exists, with the same message).

use std::sync::Arc;

use crate::{
    domain::{
        Id, Idempotency,
        access::{Access, Permission, Principal},
        audit::WriteContext,
    },
    error::{Error, Result},
    storage::Store,
};

/// The permission each RPC needs. An RPC missing from this table is refused.
pub const RPC_PERMISSIONS: &[(&str, Permission)] = &[
    ("/partnership.v1.RegistryService/CreateAgency", Permission::WriteRegistry),
    ("/partnership.v1.RegistryService/GetAgency", Permission::ReadRegistry),
    ("/partnership.v1.RegistryService/ListAgencies", Permission::ReadRegistry),
    ("/partnership.v1.RegistryService/CreatePartnership", Permission::WriteRegistry),
    ("/partnership.v1.RegistryService/GetPartnership", Permission::ReadRegistry),
    ("/partnership.v1.RegistryService/ListPartnerships", Permission::ReadRegistry),
    ("/partnership.v1.RegistryService/CreateMembership", Permission::WriteRegistry),
    ("/partnership.v1.RegistryService/UpdateMembership", Permission::WriteRegistry),
    ("/partnership.v1.RegistryService/ListMemberships", Permission::ReadRegistry),
    ("/partnership.v1.RegistryService/BatchCreateAgencies", Permission::WriteRegistry),
    ("/partnership.v1.RegistryService/BatchCreatePartnerships", Permission::WriteRegistry),
    ("/partnership.v1.RegistryService/BatchCreateMemberships", Permission::WriteRegistry),
    ("/partnership.v1.SubmissionService/SubmitRecords", Permission::SubmitRecords),
    ("/partnership.v1.SubmissionService/IngestRecords", Permission::SubmitRecords),
    ("/partnership.v1.SubmissionService/ListRecords", Permission::ReadRecords),
    ("/partnership.v1.SubmissionService/ListRecordRevisions", Permission::ReadRecords),
    ("/partnership.v1.ReportService/GetPartnershipReport", Permission::ReadReports),
    ("/partnership.v1.ReportService/ListPartnershipReports", Permission::ReadReports),
    ("/partnership.v1.ReportService/ExportReports", Permission::ReadReports),
];

/// Methods the server offers besides its own RPCs, by path: (service, method).
const OTHER_METHODS: &[(&str, &str, &str)] = &[
    ("/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"),
    ("/grpc.health.v1.Health/Watch", "grpc.health.v1.Health", "Watch"),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
    ),
];

/// The (service, method) of a path, for telemetry; anything the server does not
/// offer is `("other", "other")`, so that metrics cannot grow without bound.
pub fn rpc_name(path: &str) -> (&'static str, &'static str) {
    if let Some((p, _)) = RPC_PERMISSIONS.iter().find(|(p, _)| *p == path)
        && let Some((service, method)) = p.trim_start_matches('/').split_once('/')
    {
        return (service, method);
    }
    OTHER_METHODS.iter().find(|(p, _, _)| *p == path).map_or(("other", "other"), |(_, s, m)| (*s, *m))
}

/// What a request path is, for the identity layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The health service: open to everyone (probes need it).
    Health,
    /// Server reflection: open or for authenticated callers, as configured.
    Reflection,
    /// One of the service's RPCs and the permission it needs.
    Rpc { method: &'static str, permission: Permission },
    /// Nothing the server offers.
    Unknown,
}

pub fn route(path: &str) -> Route {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Route::Health;
    }
    if path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Route::Reflection;
    }
    match RPC_PERMISSIONS.iter().find(|(p, _)| *p == path) {
        Some((p, permission)) => {
            Route::Rpc { method: p.rsplit('/').next().unwrap_or(p), permission: *permission }
        }
        None => Route::Unknown,
    }
}

/// The grant of one call, put into the request's extensions by the identity layer.
#[derive(Debug, Clone)]
pub struct Grant {
    pub principal: Arc<Principal>,
    pub method: &'static str,
    pub access: Access,
}

impl Grant {
    /// The context of a write made under this grant: who, which RPC, which request
    /// id, and (for a scoped grant) whose records it may replace.
    pub fn write(&self, idem: Option<Idempotency>) -> WriteContext {
        WriteContext {
            owner: self.access.agency().cloned(),
            ..WriteContext::new(self.access.actor.clone(), self.method, idem)
        }
    }
}

/// The grant of a call. Every routed call has one; a call without one is refused
/// rather than served unchecked.
pub fn grant<T>(request: &tonic::Request<T>) -> Result<Grant> {
    request
        .extensions()
        .get::<Grant>()
        .cloned()
        .ok_or_else(|| Error::permission_denied("unknown", "the call was not authorised"))
}

/// Refuses a scoped caller a partnership its agency is not and never was a member
/// of, before anything about the partnership is read.
pub async fn require_partnership(access: &Access, store: &Arc<dyn Store>, partnership: &Id) -> Result<()> {
    match access.agency() {
        None => Ok(()),
        Some(agency) if store.is_or_was_member(partnership, agency).await? => Ok(()),
        Some(_) => Err(access.denied(format_args!("partnership {partnership}"))),
    }
}

/// The reporting agency a record listing is limited to: a scoped caller's own when
/// it names none, PERMISSION_DENIED when it names another.
pub fn records_agency(access: &Access, requested: Option<Id>) -> Result<Option<Id>> {
    match (access.agency(), requested) {
        (None, requested) => Ok(requested),
        (Some(own), None) => Ok(Some(own.clone())),
        (Some(own), Some(requested)) if requested == *own => Ok(Some(requested)),
        (Some(_), Some(requested)) => Err(access.denied(format_args!("records of agency {requested}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::{Actor, Scope};

    #[test]
    fn every_rpc_of_the_contract_has_a_permission() {
        let pool = prost_reflect::DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = 0;
        for service in pool.services().filter(|s| s.package_name() == "partnership.v1") {
            for m in service.methods() {
                let path = format!("/{}/{}", service.full_name(), m.name());
                assert!(matches!(route(&path), Route::Rpc { .. }), "{path} has no entry in RPC_PERMISSIONS");
                methods += 1;
            }
        }
        assert_eq!(methods, RPC_PERMISSIONS.len(), "the table lists an RPC the contract does not have");
        assert_eq!(route("/partnership.v1.RegistryService/DeleteAgency"), Route::Unknown);
        assert_eq!(route("/grpc.health.v1.Health/Check"), Route::Health);
        assert_eq!(
            rpc_name("/partnership.v1.ReportService/GetPartnershipReport"),
            ("partnership.v1.ReportService", "GetPartnershipReport")
        );
        assert_eq!(rpc_name("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        assert_eq!(rpc_name("/x.Y/Z"), ("other", "other"));
    }

    #[test]
    fn record_listings_are_limited_to_the_callers_agency() {
        let own = Id::parse("a").unwrap();
        let access = Access {
            actor: Actor { client_id: "c".into(), agency: Some(own.clone()) },
            permission: Permission::ReadRecords,
            scope: Scope::Agency(own.clone()),
        };
        assert_eq!(records_agency(&access, None).unwrap(), Some(own.clone()));
        assert_eq!(records_agency(&access, Some(own.clone())).unwrap(), Some(own.clone()));
        let e = records_agency(&access, Some(Id::parse("b").unwrap())).unwrap_err();
        assert_eq!(e.code, crate::error::Code::PermissionDenied);
        let all = Access { scope: Scope::All, ..access };
        assert_eq!(records_agency(&all, None).unwrap(), None);
    }
}
