//! Who is calling and what they may do: principals, roles, permissions and the one
//! table that says which role grants which permission over which scope. Pure: the
//! gRPC adapter maps each RPC to a permission (`grpc/authz.rs`) and asks here.

use std::{collections::BTreeSet, fmt, str::FromStr};

use super::{Id, check::RecordInput};
use crate::error::Error;

/// The roles a caller can hold (the `roles` claim of a token, `--mtls-roles` for
/// client certificates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Submits its own agency's records and reads them back.
    Submitter,
    /// Reads the reports and registry entries of its own agency's partnerships.
    Reader,
    /// Reads every report and every registry entry; no records.
    Analyst,
    /// Reads every record and revision.
    Auditor,
    /// Creates and updates agencies, partnerships and memberships.
    Registrar,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Submitter, Role::Reader, Role::Analyst, Role::Auditor, Role::Registrar];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Reader => "reader",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Registrar => "registrar",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("unknown role {s:?}: expected submitter, reader, analyst, auditor or registrar")
        })
    }
}

/// What an RPC needs. Each RPC needs exactly one (`grpc/authz.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// SubmitRecords, IngestRecords.
    SubmitRecords,
    /// ListRecords, ListRecordRevisions.
    ReadRecords,
    /// GetPartnershipReport, ListPartnershipReports, ExportReports.
    ReadReports,
    /// Get and List of agencies, partnerships and memberships.
    ReadRegistry,
    /// Create and Update of agencies, partnerships and memberships.
    WriteRegistry,
}

impl Permission {
    /// The name sent in the `permission` metadata of PERMISSION_DENIED.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SubmitRecords => "records.submit",
            Permission::ReadRecords => "records.read",
            Permission::ReadReports => "reports.read",
            Permission::ReadRegistry => "registry.read",
            Permission::WriteRegistry => "registry.write",
        }
    }
}

/// How far a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// Only the caller's own agency: its records, or the partnerships it is or was a
    /// member of. A role with this reach grants nothing to a caller without an agency.
    OwnAgency,
    /// Everything.
    All,
}

/// The authorisation policy: which role grants which permission, and how far.
/// Anything not listed is denied.
const GRANTS: &[(Role, Permission, Reach)] = &[
    (Role::Submitter, Permission::SubmitRecords, Reach::OwnAgency),
    (Role::Submitter, Permission::ReadRecords, Reach::OwnAgency),
    (Role::Reader, Permission::ReadReports, Reach::OwnAgency),
    (Role::Reader, Permission::ReadRegistry, Reach::OwnAgency),
    (Role::Analyst, Permission::ReadReports, Reach::All),
    (Role::Analyst, Permission::ReadRegistry, Reach::All),
    (Role::Auditor, Permission::ReadRecords, Reach::All),
    (Role::Registrar, Permission::WriteRegistry, Reach::All),
];

/// An authenticated caller, however they authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`, or the client certificate's SPIFFE URI.
    pub client_id: String,
    /// The agency the caller acts for, if any.
    pub agency: Option<Id>,
    pub roles: BTreeSet<Role>,
    /// Local-development mode (no authentication configured): every permission
    /// over everything, as before authentication existed.
    unrestricted: bool,
}

/// The client id written to the audit trail for writes made in local-development
/// mode.
pub const LOCAL_DEVELOPMENT_CLIENT: &str = "local-development";

impl Principal {
    pub fn new(client_id: impl Into<String>, agency: Option<Id>, roles: BTreeSet<Role>) -> Principal {
        Principal { client_id: client_id.into(), agency, roles, unrestricted: false }
    }

    /// The caller of a server without authentication (loopback only, unless
    /// explicitly allowed otherwise).
    pub fn local_development() -> Principal {
        Principal {
            client_id: LOCAL_DEVELOPMENT_CLIENT.to_string(),
            agency: None,
            roles: BTreeSet::new(),
            unrestricted: true,
        }
    }

    /// What the caller may do with `permission`: the widest scope any of its roles
    /// grants, or PERMISSION_DENIED naming the permission.
    pub fn grant(&self, permission: Permission) -> Result<Scope, Error> {
        if self.unrestricted {
            return Ok(Scope::All);
        }
        let reach = GRANTS
            .iter()
            .filter(|(role, p, reach)| {
                *p == permission
                    && self.roles.contains(role)
                    && (*reach == Reach::All || self.agency.is_some())
            })
            .map(|(_, _, reach)| *reach)
            .max();
        match (reach, &self.agency) {
            (Some(Reach::All), _) => Ok(Scope::All),
            (Some(Reach::OwnAgency), Some(agency)) => Ok(Scope::Agency(agency.clone())),
            _ => Err(Error::permission_denied(
                permission.as_str(),
                format!("the caller is not allowed {}", permission.as_str()),
            )),
        }
    }

    /// Who made a write, for the audit trail.
    pub fn actor(&self) -> Actor {
        Actor { client_id: self.client_id.clone(), agency: self.agency.clone() }
    }
}

/// Where a granted permission applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// To everything.
    All,
    /// To this agency's records, or the partnerships it is or was a member of.
    Agency(Id),
}

/// A granted permission and its scope, put on each request by the identity layer
/// and consulted by the handler before it reads or writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub actor: Actor,
    pub permission: Permission,
    pub scope: Scope,
}

impl Access {
    /// PERMISSION_DENIED for `what` (e.g. "partnership x"): the same message whether
    /// or not it exists.
    pub fn denied(&self, what: impl fmt::Display) -> Error {
        Error::permission_denied(
            self.permission.as_str(),
            format!("the caller is not allowed {} on {what}", self.permission.as_str()),
        )
    }

    /// A batch may hold only records whose reporting agency is within scope; one
    /// record of another agency refuses the whole batch (its field path in the
    /// `field` metadata). Made on the inputs as submitted, before any check or read.
    pub fn check_batch(&self, records: &[RecordInput]) -> Result<(), Error> {
        let Some(own) = self.agency() else { return Ok(()) };
        for (i, record) in records.iter().enumerate() {
            if let Some((field, agency)) = record.reporting_agency()
                && agency != own.as_str()
            {
                let path = format!("records[{i}].{field}");
                return Err(Error::permission_denied(
                    self.permission.as_str(),
                    format!("{path} names another agency: the caller submits records of agency {own} only"),
                )
                .with_metadata("field", path));
            }
        }
        Ok(())
    }

    /// The agency the scope is limited to, if it is.
    pub fn agency(&self) -> Option<&Id> {
        match &self.scope {
            Scope::All => None,
            Scope::Agency(a) => Some(a),
        }
    }
}

/// Who made a write: kept with every record revision and in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub client_id: String,
    pub agency: Option<Id>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(agency: Option<&str>, roles: &[Role]) -> Principal {
        Principal::new("c", agency.map(|a| Id::parse(a).unwrap()), roles.iter().copied().collect())
    }

    #[test]
    fn each_role_grants_exactly_its_row_of_the_table() {
        use Permission::*;
        let all = [SubmitRecords, ReadRecords, ReadReports, ReadRegistry, WriteRegistry];
        let own = Scope::Agency(Id::parse("a").unwrap());
        let expected: [(Role, &[(Permission, Scope)]); 5] = [
            (Role::Submitter, &[(SubmitRecords, own.clone()), (ReadRecords, own.clone())]),
            (Role::Reader, &[(ReadReports, own.clone()), (ReadRegistry, own.clone())]),
            (Role::Analyst, &[(ReadReports, Scope::All), (ReadRegistry, Scope::All)]),
            (Role::Auditor, &[(ReadRecords, Scope::All)]),
            (Role::Registrar, &[(WriteRegistry, Scope::All)]),
        ];
        for (role, grants) in expected {
            let p = principal(Some("a"), &[role]);
            for permission in all {
                let want = grants.iter().find(|(g, _)| *g == permission).map(|(_, s)| s.clone());
                let got = p.grant(permission);
                match want {
                    Some(scope) => assert_eq!(got.unwrap(), scope, "{role} {permission:?}"),
                    None => {
                        let e = got.unwrap_err();
                        assert_eq!(e.code, crate::error::Code::PermissionDenied, "{role} {permission:?}");
                        assert_eq!(e.metadata, vec![("permission", permission.as_str().to_string())]);
                    }
                }
            }
        }
    }

    #[test]
    fn agency_roles_grant_nothing_without_an_agency() {
        let p = principal(None, &[Role::Submitter, Role::Reader]);
        assert!(p.grant(Permission::SubmitRecords).is_err());
        assert!(p.grant(Permission::ReadReports).is_err());
    }

    #[test]
    fn the_widest_grant_wins() {
        let p = principal(Some("a"), &[Role::Reader, Role::Analyst]);
        assert_eq!(p.grant(Permission::ReadReports).unwrap(), Scope::All);
    }

    #[test]
    fn local_development_may_do_everything() {
        let p = Principal::local_development();
        assert_eq!(p.grant(Permission::WriteRegistry).unwrap(), Scope::All);
        assert_eq!(p.actor().client_id, LOCAL_DEVELOPMENT_CLIENT);
    }

    #[test]
    fn a_batch_with_one_record_of_another_agency_is_refused_whole() {
        use crate::domain::check::{BudgetContributionInput, WorkforceReturnInput};
        let access = Access {
            actor: principal(Some("a"), &[Role::Submitter]).actor(),
            permission: Permission::SubmitRecords,
            scope: Scope::Agency(Id::parse("a").unwrap()),
        };
        let mine =
            RecordInput::WorkforceReturn(WorkforceReturnInput { agency: "a".into(), ..Default::default() });
        let theirs = RecordInput::BudgetContribution(BudgetContributionInput {
            agency: "b".into(),
            ..Default::default()
        });
        assert!(access.check_batch(&[mine.clone(), RecordInput::Missing]).is_ok());
        let e = access.check_batch(&[mine.clone(), theirs.clone()]).unwrap_err();
        assert_eq!(e.code, crate::error::Code::PermissionDenied);
        assert_eq!(e.reason, crate::error::reason::PERMISSION_DENIED);
        assert!(e.metadata.contains(&("field", "records[1].budget_contribution.agency".to_string())));
        assert!(e.metadata.contains(&("permission", "records.submit".to_string())));
        let everything = Access { scope: Scope::All, ..access };
        assert!(everything.check_batch(&[mine, theirs]).is_ok());
    }

    #[test]
    fn roles_parse_by_name_only() {
        assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
        assert!("Auditor".parse::<Role>().is_err());
        assert!("admin".parse::<Role>().is_err());
    }
}
