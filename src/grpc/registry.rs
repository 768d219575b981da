//! RegistryService: agencies, partnerships, memberships.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    authz,
    fields::{Fields, nest, timestamp},
    pagination::{Page, REGISTRY_PAGES},
};
use crate::{
    domain::{
        Idempotency,
        registry::{
            Agency, Membership, MembershipPatch, MembershipTerms, NAME, NewAgency, NewMembership,
            NewPartnership, PURPOSE, Partnership, Role, Sector,
        },
    },
    error::{Error, FieldViolation, Result, ViolationKind, reason},
    pb::{self, registry_service_server::RegistryService},
    storage::Store,
};

#[derive(Debug, Clone)]
pub struct RegistryApi {
    store: Arc<dyn Store>,
}

impl RegistryApi {
    pub fn new(store: Arc<dyn Store>) -> Self {
        RegistryApi { store }
    }
}

// The values as callers spell them in JSON and in every gRPC tool.
const SECTORS: &str = "SECTOR_NHS_BODY, SECTOR_LOCAL_AUTHORITY, SECTOR_PRIVATE_PROVIDER, \
                       SECTOR_VOLUNTARY_OR_COMMUNITY_ORGANISATION, SECTOR_OTHER_PUBLIC_BODY";
const ROLES: &str = "ROLE_LEAD, ROLE_MEMBER";

fn sector_from_pb(v: i32) -> Option<Sector> {
    Some(match pb::Sector::try_from(v).ok()? {
        pb::Sector::Unspecified => return None,
        pb::Sector::NhsBody => Sector::NhsBody,
        pb::Sector::LocalAuthority => Sector::LocalAuthority,
        pb::Sector::PrivateProvider => Sector::PrivateProvider,
        pb::Sector::VoluntaryOrCommunityOrganisation => Sector::VoluntaryOrCommunityOrganisation,
        pb::Sector::OtherPublicBody => Sector::OtherPublicBody,
    })
}

fn sector_to_pb(s: Sector) -> pb::Sector {
    match s {
        Sector::NhsBody => pb::Sector::NhsBody,
        Sector::LocalAuthority => pb::Sector::LocalAuthority,
        Sector::PrivateProvider => pb::Sector::PrivateProvider,
        Sector::VoluntaryOrCommunityOrganisation => pb::Sector::VoluntaryOrCommunityOrganisation,
        Sector::OtherPublicBody => pb::Sector::OtherPublicBody,
    }
}

fn role_from_pb(v: i32) -> Option<Role> {
    match pb::Role::try_from(v).ok()? {
        pb::Role::Unspecified => None,
        pb::Role::Lead => Some(Role::Lead),
        pb::Role::Member => Some(Role::Member),
    }
}

fn role_to_pb(r: Role) -> pb::Role {
    match r {
        Role::Lead => pb::Role::Lead,
        Role::Member => pb::Role::Member,
    }
}

pub fn agency_to_pb(a: Agency) -> pb::Agency {
    pb::Agency {
        name: format!("agencies/{}", a.id),
        display_name: a.display_name,
        sector: sector_to_pb(a.sector) as i32,
        create_time: Some(timestamp(a.create_time)),
    }
}

fn partnership_to_pb(p: Partnership) -> pb::Partnership {
    pb::Partnership {
        name: format!("partnerships/{}", p.id),
        display_name: p.display_name,
        purpose: p.purpose,
        create_time: Some(timestamp(p.create_time)),
    }
}

fn membership_to_pb(m: Membership) -> pb::Membership {
    pb::Membership {
        name: m.name(),
        agency: m.agency.to_string(),
        role: role_to_pb(m.terms.role) as i32,
        start_date: m.terms.start_date.to_string(),
        end_date: m.terms.end_date.map(|d| d.to_string()).unwrap_or_default(),
        create_time: Some(timestamp(m.create_time)),
        update_time: Some(timestamp(m.update_time)),
    }
}

/// The idempotency key of a create request; the fingerprint is the canonical JSON of
/// the checked domain value, so equal requests match whatever their wire encoding.
fn idempotency<T: serde::Serialize>(
    request_id: Option<crate::domain::RequestId>,
    method: &'static str,
    value: &T,
) -> Result<Option<Idempotency>> {
    request_id
        .map(|id| {
            let content = serde_json::to_vec(value).map_err(|e| Error::internal(e.into()))?;
            Ok(Idempotency::new(id, method, &content))
        })
        .transpose()
}

/// Parses `partnerships/{partnership}/memberships/{agency}`.
fn membership_name(f: &mut Fields, path: &str, name: &str) -> Option<(crate::domain::Id, crate::domain::Id)> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["partnerships", p, "memberships", a] => {
            let p = f.id(path, p)?;
            let a = f.id(path, a)?;
            Some((p, a))
        }
        _ => {
            f.fail(path, "must be a resource name partnerships/{partnership}/memberships/{agency}");
            None
        }
    }
}

/// Most entries one batch create takes (AIP-233).
pub const MAX_BATCH_CREATES: usize = 1_000;

/// An agency as CreateAgency takes it; `at` prefixes every path (`requests[3].`).
fn parse_agency(f: &mut Fields, at: &str, req: &pb::CreateAgencyRequest) -> Option<NewAgency> {
    let id = f.id(&format!("{at}agency_id"), &req.agency_id);
    let agency = req.agency.clone().unwrap_or_default();
    let display_name = f.required_text(&format!("{at}agency.display_name"), &agency.display_name, NAME);
    let sector = f.enumeration(&format!("{at}agency.sector"), agency.sector, sector_from_pb, SECTORS);
    Some(NewAgency { id: id?, display_name: display_name?, sector: sector? })
}

/// A partnership as CreatePartnership takes it.
fn parse_partnership(f: &mut Fields, at: &str, req: &pb::CreatePartnershipRequest) -> Option<NewPartnership> {
    let id = f.id(&format!("{at}partnership_id"), &req.partnership_id);
    let partnership = req.partnership.clone().unwrap_or_default();
    let display_name =
        f.required_text(&format!("{at}partnership.display_name"), &partnership.display_name, NAME);
    let purpose = f.optional_text(&format!("{at}partnership.purpose"), &partnership.purpose, PURPOSE);
    Some(NewPartnership { id: id?, display_name: display_name?, purpose: purpose? })
}

/// A membership of `partnership` as CreateMembership takes it.
fn parse_membership(
    f: &mut Fields,
    at: &str,
    partnership: crate::domain::Id,
    req: &pb::CreateMembershipRequest,
) -> Option<NewMembership> {
    let m = req.membership.clone().unwrap_or_default();
    let agency = f.id(&format!("{at}membership.agency"), &m.agency);
    let role = f.enumeration(&format!("{at}membership.role"), m.role, role_from_pb, ROLES);
    let start_date = f.date(&format!("{at}membership.start_date"), &m.start_date);
    let end_date = f.optional_date(&format!("{at}membership.end_date"), &m.end_date);
    let terms = MembershipTerms::new(role?, start_date?, end_date?)
        .map_err(|_| f.fail(format!("{at}membership.end_date"), "must not be before start_date"))
        .ok()?;
    Some(NewMembership { partnership, agency: agency?, terms })
}

/// The batch's entry count is within 1..=1000 and no entry carries its own request id.
fn check_batch(f: &mut Fields, count: usize, request_ids: impl Iterator<Item = bool>) {
    if count == 0 {
        f.fail("requests", "must hold at least one entry");
    } else if count > MAX_BATCH_CREATES {
        f.fail("requests", format_args!("holds {count} entries; at most {MAX_BATCH_CREATES} are allowed"));
    }
    for (i, has_id) in request_ids.enumerate() {
        if has_id {
            f.fail(
                format!("requests[{i}].request_id"),
                "must be empty: the batch's request_id covers its entries",
            );
        }
    }
}

/// A violation for each entry whose key an earlier entry of the batch already has.
fn check_unique<K: Eq + std::hash::Hash>(f: &mut Fields, keys: impl Iterator<Item = (usize, K, String)>) {
    let mut first: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    for (i, key, path) in keys {
        if let Some(j) = first.get(&key) {
            f.fail(path, format_args!("repeats requests[{j}]"));
        } else {
            first.insert(key, i);
        }
    }
}

/// Names, for an ALREADY_EXISTS from storage, the batch entry it is about (`field`
/// metadata), found by the ids in the error's metadata.
fn locate_conflict(e: Error, entry: impl Fn(&[(&'static str, String)]) -> Option<String>) -> Error {
    if e.code != crate::error::Code::AlreadyExists {
        return e;
    }
    match entry(&e.metadata) {
        Some(field) => e.with_metadata("field", field),
        None => e,
    }
}

fn metadata<'a>(meta: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
    meta.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
}

impl RegistryApi {
    /// Every partnership and agency the memberships name exists; otherwise NOT_FOUND
    /// naming each unknown one by its path (given with each membership). Checked
    /// before writing so the caller learns of each; none can disappear afterwards, as
    /// nothing is ever deleted.
    async fn require_references(&self, memberships: &[(&NewMembership, String, String)]) -> Result<()> {
        let refs = crate::domain::check::References {
            agencies: memberships.iter().map(|(m, _, _)| m.agency.to_string()).collect(),
            partnerships: memberships.iter().map(|(m, _, _)| m.partnership.to_string()).collect(),
        };
        let known = self.store.known_ids(&refs).await?;
        let mut unknown = Vec::new();
        for (i, (m, partnership_path, agency_path)) in memberships.iter().enumerate() {
            if !known.partnerships.contains(&m.partnership) {
                unknown.push((
                    i,
                    FieldViolation::new(
                        partnership_path.as_str(),
                        ViolationKind::UnknownPartnership,
                        "names an unknown partnership",
                    ),
                ));
            }
            if !known.agencies.contains(&m.agency) {
                unknown.push((
                    i,
                    FieldViolation::new(
                        agency_path.as_str(),
                        ViolationKind::UnknownAgency,
                        "names an unknown agency",
                    ),
                ));
            }
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(Error::rejected(
                reason::INVALID_REQUEST,
                unknown,
                crate::domain::check::MAX_LISTED_VIOLATIONS,
            ))
        }
    }

    async fn require_partnership(&self, id: &crate::domain::Id) -> Result<()> {
        match self.store.get_partnership(id).await? {
            Some(_) => Ok(()),
            None => Err(unknown_partnership(id)),
        }
    }
}

fn unknown_partnership(id: &crate::domain::Id) -> Error {
    Error::not_found(reason::UNKNOWN_PARTNERSHIP, format!("partnership {id} does not exist"))
        .with_metadata("partnership", id.as_str())
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn create_agency(
        &self,
        request: Request<pb::CreateAgencyRequest>,
    ) -> Result<Response<pb::Agency>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        let new = parse_agency(&mut f, "", &req);
        let request_id = f.request_id("request_id", &req.request_id);
        let (Some(new), true) = (new, f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        let idem = idempotency(request_id, "CreateAgency", &new)?;
        let created = self.store.create_agency(new, &grant.write(idem)).await?;
        Ok(Response::new(agency_to_pb(created)))
    }

    async fn get_agency(
        &self,
        request: Request<pb::GetAgencyRequest>,
    ) -> Result<Response<pb::Agency>, Status> {
        let grant = authz::grant(&request)?;
        let mut f = Fields::new();
        let (Some(id), true) = (f.name("name", &request.get_ref().name, "agencies"), f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        // A scoped caller reads its own agency only.
        if grant.access.agency().is_some_and(|own| *own != id) {
            return Err(grant.access.denied(format_args!("agency {id}")).into());
        }
        match self.store.get_agency(&id).await? {
            Some(a) => Ok(Response::new(agency_to_pb(a))),
            None => Err(Error::not_found(reason::UNKNOWN_AGENCY, format!("agency {id} does not exist"))
                .with_metadata("agency", id.as_str())
                .into()),
        }
    }

    async fn list_agencies(
        &self,
        request: Request<pb::ListAgenciesRequest>,
    ) -> Result<Response<pb::ListAgenciesResponse>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let page = Page::parse(req.page_size, &req.page_token, REGISTRY_PAGES, "agencies".into())?;
        let mut agencies = match grant.access.agency() {
            None => self.store.list_agencies(page.fetch()).await?,
            // A scoped caller's listing holds its own agency only.
            Some(own) if page.after.as_deref().is_none_or(|after| after < own.as_str()) => {
                self.store.get_agency(own).await?.into_iter().collect()
            }
            Some(_) => Vec::new(),
        };
        let next_page_token = page.finish(&mut agencies, |a| a.id.to_string());
        Ok(Response::new(pb::ListAgenciesResponse {
            agencies: agencies.into_iter().map(agency_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn create_partnership(
        &self,
        request: Request<pb::CreatePartnershipRequest>,
    ) -> Result<Response<pb::Partnership>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        let new = parse_partnership(&mut f, "", &req);
        let request_id = f.request_id("request_id", &req.request_id);
        let (Some(new), true) = (new, f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        let idem = idempotency(request_id, "CreatePartnership", &new)?;
        let created = self.store.create_partnership(new, &grant.write(idem)).await?;
        Ok(Response::new(partnership_to_pb(created)))
    }

    async fn get_partnership(
        &self,
        request: Request<pb::GetPartnershipRequest>,
    ) -> Result<Response<pb::Partnership>, Status> {
        let grant = authz::grant(&request)?;
        let mut f = Fields::new();
        let (Some(id), true) = (f.name("name", &request.get_ref().name, "partnerships"), f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        authz::require_partnership(&grant.access, &self.store, &id).await?;
        match self.store.get_partnership(&id).await? {
            Some(p) => Ok(Response::new(partnership_to_pb(p))),
            None => Err(unknown_partnership(&id).into()),
        }
    }

    async fn list_partnerships(
        &self,
        request: Request<pb::ListPartnershipsRequest>,
    ) -> Result<Response<pb::ListPartnershipsResponse>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let page = Page::parse(req.page_size, &req.page_token, REGISTRY_PAGES, "partnerships".into())?;
        let mut partnerships = match grant.access.agency() {
            None => self.store.list_partnerships(page.fetch()).await?,
            Some(own) => self.store.list_partnerships_of(own, page.fetch()).await?,
        };
        let next_page_token = page.finish(&mut partnerships, |p| p.id.to_string());
        Ok(Response::new(pb::ListPartnershipsResponse {
            partnerships: partnerships.into_iter().map(partnership_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn create_membership(
        &self,
        request: Request<pb::CreateMembershipRequest>,
    ) -> Result<Response<pb::Membership>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        let partnership = f.name("parent", &req.parent, "partnerships");
        let new = partnership.and_then(|p| parse_membership(&mut f, "", p, &req));
        let request_id = f.request_id("request_id", &req.request_id);
        let (Some(new), true) = (new, f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        self.require_references(&[(&new, "parent".to_string(), "membership.agency".to_string())]).await?;
        let idem = idempotency(request_id, "CreateMembership", &new)?;
        let created = self.store.create_membership(new, &grant.write(idem)).await?;
        Ok(Response::new(membership_to_pb(created)))
    }

    async fn update_membership(
        &self,
        request: Request<pb::UpdateMembershipRequest>,
    ) -> Result<Response<pb::Membership>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        let m = req.membership.unwrap_or_default();
        let ids = membership_name(&mut f, "membership.name", &m.name);
        let paths: Vec<String> = match &req.update_mask {
            Some(mask) => mask.paths.clone(),
            None => {
                // AIP-134: without a mask, every populated field is an update.
                let mut p = Vec::new();
                if m.role != 0 {
                    p.push("role".to_string());
                }
                if !m.start_date.is_empty() {
                    p.push("start_date".to_string());
                }
                if !m.end_date.is_empty() {
                    p.push("end_date".to_string());
                }
                p
            }
        };
        let mut patch = MembershipPatch::default();
        for path in &paths {
            match path.as_str() {
                "*" => {
                    patch.role = f.enumeration("membership.role", m.role, role_from_pb, ROLES);
                    patch.start_date = f.date("membership.start_date", &m.start_date);
                    patch.end_date = f.optional_date("membership.end_date", &m.end_date);
                }
                "role" => patch.role = f.enumeration("membership.role", m.role, role_from_pb, ROLES),
                "start_date" => patch.start_date = f.date("membership.start_date", &m.start_date),
                "end_date" => patch.end_date = f.optional_date("membership.end_date", &m.end_date),
                other => f.fail(
                    "update_mask",
                    format_args!("names {other:?}; only role, start_date and end_date can change"),
                ),
            }
        }
        if paths.is_empty() {
            f.fail("update_mask", "names no field to change");
        }
        let (Some((partnership, agency)), true) = (ids, f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        let updated = self
            .store
            .update_membership(&partnership, &agency, patch, &grant.write(None))
            .await
            .map_err(|e| nest(e, "membership."))?;
        Ok(Response::new(membership_to_pb(updated)))
    }

    async fn list_memberships(
        &self,
        request: Request<pb::ListMembershipsRequest>,
    ) -> Result<Response<pb::ListMembershipsResponse>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        let partnership = f.name("parent", &req.parent, "partnerships");
        let (Some(partnership), true) = (partnership, f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        authz::require_partnership(&grant.access, &self.store, &partnership).await?;
        let page = Page::parse(
            req.page_size,
            &req.page_token,
            REGISTRY_PAGES,
            format!("memberships:{partnership}"),
        )?;
        self.require_partnership(&partnership).await?;
        let mut memberships = self.store.list_memberships(&partnership, page.fetch()).await?;
        let next_page_token = page.finish(&mut memberships, |m| m.agency.to_string());
        Ok(Response::new(pb::ListMembershipsResponse {
            memberships: memberships.into_iter().map(membership_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn batch_create_agencies(
        &self,
        request: Request<pb::BatchCreateAgenciesRequest>,
    ) -> Result<Response<pb::BatchCreateAgenciesResponse>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        check_batch(&mut f, req.requests.len(), req.requests.iter().map(|r| !r.request_id.is_empty()));
        let new: Vec<Option<NewAgency>> = req
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| parse_agency(&mut f, &format!("requests[{i}]."), r))
            .collect();
        check_unique(
            &mut f,
            new.iter()
                .enumerate()
                .filter_map(|(i, a)| Some((i, a.as_ref()?.id.clone(), format!("requests[{i}].agency_id")))),
        );
        let request_id = f.request_id("request_id", &req.request_id);
        let (Some(new), true) = (new.into_iter().collect::<Option<Vec<_>>>(), f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        let idem = idempotency(request_id, "BatchCreateAgencies", &new)?;
        let ids: Vec<String> = new.iter().map(|a| a.id.to_string()).collect();
        let created =
            self.store.create_agencies(new, &grant.write(idem).validating(req.validate_only)).await.map_err(
                |e| {
                    locate_conflict(e, |meta| {
                        let id = metadata(meta, "agency")?;
                        ids.iter().position(|a| a == id).map(|i| format!("requests[{i}].agency_id"))
                    })
                },
            )?;
        Ok(Response::new(pb::BatchCreateAgenciesResponse {
            agencies: created.into_iter().map(agency_to_pb).collect(),
        }))
    }

    async fn batch_create_partnerships(
        &self,
        request: Request<pb::BatchCreatePartnershipsRequest>,
    ) -> Result<Response<pb::BatchCreatePartnershipsResponse>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        check_batch(&mut f, req.requests.len(), req.requests.iter().map(|r| !r.request_id.is_empty()));
        let new: Vec<Option<NewPartnership>> = req
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| parse_partnership(&mut f, &format!("requests[{i}]."), r))
            .collect();
        check_unique(
            &mut f,
            new.iter().enumerate().filter_map(|(i, p)| {
                Some((i, p.as_ref()?.id.clone(), format!("requests[{i}].partnership_id")))
            }),
        );
        let request_id = f.request_id("request_id", &req.request_id);
        let (Some(new), true) = (new.into_iter().collect::<Option<Vec<_>>>(), f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        let idem = idempotency(request_id, "BatchCreatePartnerships", &new)?;
        let ids: Vec<String> = new.iter().map(|p| p.id.to_string()).collect();
        let created = self
            .store
            .create_partnerships(new, &grant.write(idem).validating(req.validate_only))
            .await
            .map_err(|e| {
                locate_conflict(e, |meta| {
                    let id = metadata(meta, "partnership")?;
                    ids.iter().position(|p| p == id).map(|i| format!("requests[{i}].partnership_id"))
                })
            })?;
        Ok(Response::new(pb::BatchCreatePartnershipsResponse {
            partnerships: created.into_iter().map(partnership_to_pb).collect(),
        }))
    }

    async fn batch_create_memberships(
        &self,
        request: Request<pb::BatchCreateMembershipsRequest>,
    ) -> Result<Response<pb::BatchCreateMembershipsResponse>, Status> {
        let grant = authz::grant(&request)?;
        let req = request.into_inner();
        let mut f = Fields::new();
        check_batch(&mut f, req.requests.len(), req.requests.iter().map(|r| !r.request_id.is_empty()));
        // AIP-233: the batch's parent, when it names one partnership, is every entry's.
        let parent = match req.parent.as_str() {
            "" | "partnerships/-" => None,
            name => f.name("parent", name, "partnerships"),
        };
        let fixed = !matches!(req.parent.as_str(), "" | "partnerships/-");
        let mut new = Vec::with_capacity(req.requests.len());
        for (i, r) in req.requests.iter().enumerate() {
            let at = format!("requests[{i}].");
            let partnership = match (&parent, r.parent.as_str()) {
                (Some(p), "") => Some(p.clone()),
                (Some(p), own) => {
                    let own = f.name(&format!("{at}parent"), own, "partnerships");
                    if own.as_ref().is_some_and(|o| o != p) {
                        f.fail(format!("{at}parent"), "must be empty or the batch's parent");
                    }
                    own
                }
                (None, own) if !fixed => f.name(&format!("{at}parent"), own, "partnerships"),
                (None, _) => None,
            };
            new.push(partnership.and_then(|p| parse_membership(&mut f, &at, p, r)));
        }
        check_unique(
            &mut f,
            new.iter().enumerate().filter_map(|(i, m)| {
                let m = m.as_ref()?;
                Some((
                    i,
                    (m.partnership.clone(), m.agency.clone()),
                    format!("requests[{i}].membership.agency"),
                ))
            }),
        );
        let request_id = f.request_id("request_id", &req.request_id);
        let (Some(new), true) = (new.into_iter().collect::<Option<Vec<_>>>(), f.is_clean()) else {
            return Err(f.into_error(reason::INVALID_REQUEST).into());
        };
        let parent_path = |i: usize| {
            if req.requests[i].parent.is_empty() {
                "parent".to_string()
            } else {
                format!("requests[{i}].parent")
            }
        };
        let paths: Vec<(&NewMembership, String, String)> = new
            .iter()
            .enumerate()
            .map(|(i, m)| (m, parent_path(i), format!("requests[{i}].membership.agency")))
            .collect();
        self.require_references(&paths).await?;
        let idem = idempotency(request_id, "BatchCreateMemberships", &new)?;
        let keys: Vec<(String, String)> =
            new.iter().map(|m| (m.partnership.to_string(), m.agency.to_string())).collect();
        let created = self
            .store
            .create_memberships(new, &grant.write(idem).validating(req.validate_only))
            .await
            .map_err(|e| {
                locate_conflict(e, |meta| {
                    let (p, a) = (metadata(meta, "partnership")?, metadata(meta, "agency")?);
                    keys.iter()
                        .position(|(kp, ka)| kp == p && ka == a)
                        .map(|i| format!("requests[{i}].membership.agency"))
                })
            })?;
        Ok(Response::new(pb::BatchCreateMembershipsResponse {
            memberships: created.into_iter().map(membership_to_pb).collect(),
        }))
    }
}
