//! RegistryService over gRPC: create/get/list, pagination, validation, idempotency.

use partnership_metrics::pb;
use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{assert_error, spawn_app};

fn agency_request(id: &str, name: &str, sector: i32, request_id: &str) -> pb::CreateAgencyRequest {
    pb::CreateAgencyRequest {
        agency_id: id.into(),
        agency: Some(pb::Agency { display_name: name.into(), sector, ..Default::default() }),
        request_id: request_id.into(),
    }
}

fn membership_request(
    parent: &str,
    agency: &str,
    role: i32,
    start: &str,
    end: &str,
) -> pb::CreateMembershipRequest {
    pb::CreateMembershipRequest {
        parent: parent.into(),
        membership: Some(pb::Membership {
            agency: agency.into(),
            role,
            start_date: start.into(),
            end_date: end.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

backend_test! {
async fn agencies_are_created_read_and_listed_page_by_page() {
    let app = spawn_app().await;
    let mut client = app.registry();
    // Created out of order: the list must come back in id order.
    for id in ["la-03", "nhs-01", "vol-07", "la-02", "priv-05", "nhs-04", "vol-06"] {
        let created = client
            .create_agency(agency_request(id, &format!("Agency {id}"), pb::Sector::LocalAuthority as i32, ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.name, format!("agencies/{id}"));
        assert!(created.create_time.is_some());
    }
    let got = client
        .get_agency(pb::GetAgencyRequest { name: "agencies/vol-07".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.display_name, "Agency vol-07");
    assert_eq!(got.sector, pb::Sector::LocalAuthority as i32);

    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_agencies(pb::ListAgenciesRequest { page_size: 3, page_token: token })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.agencies.len() <= 3);
        names.extend(page.agencies.into_iter().map(|a| a.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        ["la-02", "la-03", "nhs-01", "nhs-04", "priv-05", "vol-06", "vol-07"]
            .map(|id| format!("agencies/{id}"))
    );
}
}

backend_test! {
async fn partnerships_and_memberships_are_listed_page_by_page() {
    let app = spawn_app().await;
    for p in ["pb", "pa", "pc"] {
        app.create_partnership(p).await;
    }
    for a in ["a5", "a1", "a4", "a2", "a3"] {
        app.create_agency(a).await;
        app.create_membership("pa", a, pb::Role::Member, "2024-01-01", "").await;
    }
    let mut client = app.registry();
    let first = client
        .list_partnerships(pb::ListPartnershipsRequest { page_size: 2, page_token: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.partnerships.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["partnerships/pa", "partnerships/pb"]
    );
    let second = client
        .list_partnerships(pb::ListPartnershipsRequest { page_size: 2, page_token: first.next_page_token })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.partnerships.len(), 1);
    assert!(second.next_page_token.is_empty());

    let mut agencies = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_memberships(pb::ListMembershipsRequest {
                parent: "partnerships/pa".into(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        agencies.extend(page.memberships.iter().map(|m| m.agency.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(agencies, ["a1", "a2", "a3", "a4", "a5"]);
    let memberships = client
        .list_memberships(pb::ListMembershipsRequest {
            parent: "partnerships/pa".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(memberships.memberships[0].name, "partnerships/pa/memberships/a1");

    // A token belongs to the list it came from.
    let err = client
        .list_memberships(pb::ListMembershipsRequest {
            parent: "partnerships/pb".into(),
            page_size: 1,
            page_token: memberships.next_page_token,
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_TOKEN", &["page_token"]);
    let err = client
        .list_agencies(pb::ListAgenciesRequest { page_size: -1, page_token: String::new() })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["page_size"]);
    let err = client
        .list_memberships(pb::ListMembershipsRequest {
            parent: "partnerships/nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "UNKNOWN_PARTNERSHIP", &[]);
}
}

backend_test! {
/// Every validation rule of the registry: the code, the field path, and nothing stored.
async fn invalid_creates_are_rejected_with_field_paths_and_store_nothing() {
    let app = spawn_app().await;
    app.create_agency("nhs-a").await;
    app.create_partnership("pa").await;
    let mut client = app.registry();
    let before = app.snapshot().await;

    let agency_cases: Vec<(pb::CreateAgencyRequest, &[&str])> = vec![
        (agency_request("Bad_Id", "X", 1, ""), &["agency_id"]),
        (agency_request("", "X", 1, ""), &["agency_id"]),
        (agency_request(&"a".repeat(64), "X", 1, ""), &["agency_id"]),
        (agency_request("ok", "", 1, ""), &["agency.display_name"]),
        (agency_request("ok", "   ", 1, ""), &["agency.display_name"]),
        (agency_request("ok", &"x".repeat(1025), 1, ""), &["agency.display_name"]),
        (agency_request("ok", "X", 0, ""), &["agency.sector"]),
        (agency_request("ok", "X", 99, ""), &["agency.sector"]),
        (agency_request("ok", "X", 1, "has space"), &["request_id"]),
        (agency_request("BAD", "", 0, ""), &["agency.display_name", "agency.sector", "agency_id"]),
    ];
    for (request, fields) in agency_cases {
        let err = client.create_agency(request.clone()).await.unwrap_err();
        let mut want = fields.to_vec();
        want.sort_unstable();
        let details = tonic_types::StatusExt::get_error_details(&err);
        let mut got: Vec<String> =
            details.bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
        got.sort_unstable();
        assert_eq!(got, want, "{request:?}");
        assert_error(
            &err,
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &details
                .bad_request()
                .unwrap()
                .field_violations
                .iter()
                .map(|v| v.field.as_str())
                .collect::<Vec<_>>(),
        );
    }

    let err = client
        .create_partnership(pb::CreatePartnershipRequest {
            partnership_id: "p-x".into(),
            partnership: Some(pb::Partnership { display_name: String::new(), ..Default::default() }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["partnership.display_name"]);
    let err = client
        .create_partnership(pb::CreatePartnershipRequest {
            partnership_id: "p x".into(),
            partnership: Some(pb::Partnership {
                display_name: "X".into(),
                purpose: "y".repeat(4097),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["partnership_id", "partnership.purpose"]);

    let lead = pb::Role::Lead as i32;
    let membership_cases: Vec<(pb::CreateMembershipRequest, Code, &str, &[&str])> = vec![
        (
            membership_request("partnerships/pa", "nhs-a", lead, "2026-02-01", "2026-01-31"),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.end_date"],
        ),
        (
            membership_request("partnerships/pa", "nhs-a", lead, "2026-02-30", ""),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.start_date"],
        ),
        (
            membership_request("partnerships/pa", "nhs-a", lead, "", ""),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.start_date"],
        ),
        (
            membership_request("partnerships/pa", "nhs-a", lead, "1899-12-31", ""),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.start_date"],
        ),
        (
            membership_request("partnerships/pa", "nhs-a", 0, "2026-01-01", ""),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.role"],
        ),
        (
            membership_request("partnerships/pa", "nhs-a", 7, "2026-01-01", ""),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.role"],
        ),
        (
            membership_request("pa", "nhs-a", lead, "2026-01-01", ""),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["parent"],
        ),
        (
            membership_request("partnerships/pa", "NHS A", lead, "2026-01-01", ""),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.agency"],
        ),
        (
            membership_request("partnerships/pa", "ghost", lead, "2026-01-01", ""),
            Code::NotFound,
            "UNKNOWN_AGENCY",
            &["membership.agency"],
        ),
        (
            membership_request("partnerships/nowhere", "nhs-a", lead, "2026-01-01", ""),
            Code::NotFound,
            "UNKNOWN_PARTNERSHIP",
            &["parent"],
        ),
        (
            membership_request("partnerships/nowhere", "ghost", lead, "2026-01-01", ""),
            Code::NotFound,
            "UNKNOWN_PARTNERSHIP",
            &["membership.agency", "parent"],
        ),
    ];
    for (request, code, reason, fields) in membership_cases {
        let err = client.create_membership(request.clone()).await.unwrap_err();
        assert_error(&err, code, reason, fields);
    }

    let err = client.get_agency(pb::GetAgencyRequest { name: "agency/nhs-a".into() }).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["name"]);
    let err = client.get_agency(pb::GetAgencyRequest { name: "agencies/ghost".into() }).await.unwrap_err();
    assert_error(&err, Code::NotFound, "UNKNOWN_AGENCY", &[]);
    let err = client
        .get_partnership(pb::GetPartnershipRequest { name: "partnerships/ghost".into() })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "UNKNOWN_PARTNERSHIP", &[]);

    assert_eq!(app.snapshot().await, before, "a rejected request changed the database");
}
}

backend_test! {
async fn duplicates_are_already_exists() {
    let app = spawn_app().await;
    app.create_agency("nhs-a").await;
    app.create_partnership("pa").await;
    app.create_membership("pa", "nhs-a", pb::Role::Lead, "2020-01-01", "").await;
    let mut client = app.registry();
    let before = app.snapshot().await;
    let err = client.create_agency(agency_request("nhs-a", "Again", 1, "")).await.unwrap_err();
    assert_error(&err, Code::AlreadyExists, "AGENCY_EXISTS", &[]);
    let err = client
        .create_partnership(pb::CreatePartnershipRequest {
            partnership_id: "pa".into(),
            partnership: Some(pb::Partnership { display_name: "Again".into(), ..Default::default() }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "PARTNERSHIP_EXISTS", &[]);
    let err = client
        .create_membership(membership_request(
            "partnerships/pa",
            "nhs-a",
            pb::Role::Member as i32,
            "2021-01-01",
            "",
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "MEMBERSHIP_EXISTS", &[]);
    assert_eq!(app.snapshot().await, before);
}
}

backend_test! {
async fn a_retried_create_returns_the_first_result_and_creates_nothing() {
    let app = spawn_app().await;
    let mut client = app.registry();
    let request =
        agency_request("nhs-a", "NHS A", pb::Sector::NhsBody as i32, "7f1c2a9e-0b7d-4c55-9b1e-3f0f0c2d1a00");
    let first = client.create_agency(request.clone()).await.unwrap().into_inner();
    let after_first = app.snapshot().await;
    let retry = client.create_agency(request.clone()).await.unwrap().into_inner();
    assert_eq!(retry, first, "a retry returns the first response, create_time included");
    assert_eq!(app.snapshot().await, after_first, "a retry stores nothing");

    // The same id for a different request is refused, and stores nothing either.
    let mut other = request.clone();
    other.agency.as_mut().unwrap().display_name = "Someone else".into();
    let err = client.create_agency(other).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED", &["request_id"]);
    let mut other_method = pb::CreatePartnershipRequest {
        partnership_id: "pa".into(),
        partnership: Some(pb::Partnership { display_name: "P".into(), ..Default::default() }),
        request_id: request.request_id.clone(),
    };
    let err = client.create_partnership(other_method.clone()).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED", &["request_id"]);
    assert_eq!(app.snapshot().await, after_first);

    // Partnerships and memberships honour request ids too.
    other_method.request_id = "p-1".into();
    let p1 = client.create_partnership(other_method.clone()).await.unwrap().into_inner();
    assert_eq!(client.create_partnership(other_method).await.unwrap().into_inner(), p1);
    let mut m = membership_request("partnerships/pa", "nhs-a", pb::Role::Lead as i32, "2020-01-01", "");
    m.request_id = "m-1".into();
    let m1 = client.create_membership(m.clone()).await.unwrap().into_inner();
    // Even after the membership changed, the retry answers with the first result.
    client
        .update_membership(pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                name: m1.name.clone(),
                end_date: "2026-01-01".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask { paths: vec!["end_date".into()] }),
        })
        .await
        .unwrap();
    assert_eq!(client.create_membership(m).await.unwrap().into_inner(), m1);
}
}

backend_test! {
async fn memberships_can_end_reopen_and_change_role() {
    let app = spawn_app().await;
    app.create_agency("nhs-a").await;
    app.create_partnership("pa").await;
    let created = app.create_membership("pa", "nhs-a", pb::Role::Member, "2020-01-01", "").await;
    let mut client = app.registry();
    let update = |membership: pb::Membership, paths: Option<Vec<&str>>| pb::UpdateMembershipRequest {
        membership: Some(membership),
        update_mask: paths.map(|p| FieldMask { paths: p.into_iter().map(String::from).collect() }),
    };
    let name = created.name.clone();

    let ended = client
        .update_membership(update(
            pb::Membership { name: name.clone(), end_date: "2025-12-31".into(), ..Default::default() },
            Some(vec!["end_date"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ended.end_date.as_str(), ended.role), ("2025-12-31", pb::Role::Member as i32));

    // No mask: every populated field changes (AIP-134).
    let lead = client
        .update_membership(update(
            pb::Membership { name: name.clone(), role: pb::Role::Lead as i32, ..Default::default() },
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((lead.role, lead.end_date.as_str()), (pb::Role::Lead as i32, "2025-12-31"));

    // An empty end date under the mask clears it: the agency rejoined.
    let reopened = client
        .update_membership(update(
            pb::Membership { name: name.clone(), ..Default::default() },
            Some(vec!["end_date"]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reopened.end_date, "");
    assert_eq!(reopened.start_date, "2020-01-01");

    let before = app.snapshot().await;
    let bad_cases: Vec<(pb::UpdateMembershipRequest, Code, &str, &[&str])> = vec![
        (
            update(
                pb::Membership { name: name.clone(), end_date: "2019-12-31".into(), ..Default::default() },
                Some(vec!["end_date"]),
            ),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.end_date"],
        ),
        (
            update(
                pb::Membership { name: name.clone(), end_date: "2026-13-01".into(), ..Default::default() },
                Some(vec!["end_date"]),
            ),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.end_date"],
        ),
        (
            update(pb::Membership { name: name.clone(), role: 0, ..Default::default() }, Some(vec!["role"])),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.role"],
        ),
        (
            update(pb::Membership { name: name.clone(), ..Default::default() }, Some(vec!["agency"])),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["update_mask"],
        ),
        (
            update(pb::Membership { name: name.clone(), ..Default::default() }, None),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["update_mask"],
        ),
        (
            update(
                pb::Membership {
                    name: "partnerships/pa/agencies/nhs-a".into(),
                    role: 1,
                    ..Default::default()
                },
                None,
            ),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["membership.name"],
        ),
        (
            update(
                pb::Membership {
                    name: "partnerships/pa/memberships/ghost".into(),
                    role: 1,
                    ..Default::default()
                },
                None,
            ),
            Code::NotFound,
            "UNKNOWN_MEMBERSHIP",
            &[],
        ),
    ];
    for (request, code, reason, fields) in bad_cases {
        let err = client.update_membership(request).await.unwrap_err();
        assert_error(&err, code, reason, fields);
    }
    // A start moved past the end is blamed on the start.
    client
        .update_membership(update(
            pb::Membership { name: name.clone(), end_date: "2021-01-01".into(), ..Default::default() },
            Some(vec!["end_date"]),
        ))
        .await
        .unwrap();
    let mid = app.snapshot().await;
    let err = client
        .update_membership(update(
            pb::Membership { name: name.clone(), start_date: "2022-01-01".into(), ..Default::default() },
            Some(vec!["start_date"]),
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["membership.start_date"]);
    assert_eq!(app.snapshot().await, mid);
    assert_ne!(before, mid);
}
}

backend_test! {
async fn control_characters_in_text_are_refused_on_every_backend() {
    let app = spawn_app().await;
    let mut client = app.registry();
    let before = app.snapshot().await;
    for name in ["NHS\0Trust", "Escape \u{1b}[31m", "Two\nlines", "Bell\u{7}", "C1 \u{85} next line"] {
        let err = client.create_agency(agency_request("nhs-z", name, pb::Sector::NhsBody as i32, "")).await.unwrap_err();
        assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["agency.display_name"]);
    }
    let err = client
        .create_partnership(pb::CreatePartnershipRequest {
            partnership_id: "pz".into(),
            partnership: Some(pb::Partnership {
                display_name: "P".into(),
                purpose: "nul\0inside".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["partnership.purpose"]);
    assert_eq!(app.snapshot().await, before, "nothing stored");
    // A purpose is a paragraph: tabs and line breaks are text.
    client
        .create_partnership(pb::CreatePartnershipRequest {
            partnership_id: "pz".into(),
            partnership: Some(pb::Partnership {
                display_name: "P".into(),
                purpose: "Line one\n\tLine two\r\n".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
}
}

backend_test! {
async fn an_enum_error_names_the_values_as_callers_spell_them() {
    let app = spawn_app().await;
    let err = app.registry().create_agency(agency_request("nhs-z", "Z", 0, "")).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_REQUEST", &["agency.sector"]);
    let details = tonic_types::StatusExt::get_error_details(&err);
    let description = &details.bad_request().unwrap().field_violations[0].description;
    assert!(description.contains("SECTOR_NHS_BODY") && description.contains("SECTOR_OTHER_PUBLIC_BODY"), "{description}");
}
}

fn agencies_batch(ids: &[&str]) -> pb::BatchCreateAgenciesRequest {
    pb::BatchCreateAgenciesRequest {
        requests: ids
            .iter()
            .map(|id| agency_request(id, &format!("Agency {id}"), pb::Sector::NhsBody as i32, ""))
            .collect(),
        request_id: String::new(),
        validate_only: false,
    }
}

backend_test! {
/// AIP-233: a batch is created whole, in order, as its single creates would create it.
async fn batch_creates_register_everything_in_one_call() {
    let app = spawn_app().await;
    let mut client = app.registry();
    let ids: Vec<String> = (0..1000).map(|i| format!("a-{i:04}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let agencies = client.batch_create_agencies(agencies_batch(&refs)).await.unwrap().into_inner().agencies;
    assert_eq!(agencies.len(), 1000);
    assert_eq!(agencies[7].name, "agencies/a-0007");
    assert!(agencies.iter().all(|a| a.create_time.is_some()));
    assert_eq!(
        client.get_agency(pb::GetAgencyRequest { name: "agencies/a-0999".into() }).await.unwrap().into_inner(),
        agencies[999]
    );

    let partnerships = client
        .batch_create_partnerships(pb::BatchCreatePartnershipsRequest {
            requests: ["pb", "pa"]
                .iter()
                .map(|id| pb::CreatePartnershipRequest {
                    partnership_id: id.to_string(),
                    partnership: Some(pb::Partnership { display_name: format!("P {id}"), ..Default::default() }),
                    request_id: String::new(),
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .partnerships;
    assert_eq!(partnerships.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["partnerships/pb", "partnerships/pa"]);

    // Memberships of one partnership through the batch's parent, and of several.
    let lead = pb::Role::Lead as i32;
    let member = pb::Role::Member as i32;
    let one = client
        .batch_create_memberships(pb::BatchCreateMembershipsRequest {
            parent: "partnerships/pa".into(),
            requests: vec![
                membership_request("", "a-0001", lead, "2024-01-01", ""),
                membership_request("partnerships/pa", "a-0002", member, "2024-01-01", "2025-12-31"),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert_eq!(one[1].name, "partnerships/pa/memberships/a-0002");
    assert_eq!(one[1].end_date, "2025-12-31");
    let several = client
        .batch_create_memberships(pb::BatchCreateMembershipsRequest {
            parent: "partnerships/-".into(),
            requests: vec![
                membership_request("partnerships/pb", "a-0001", lead, "2024-01-01", ""),
                membership_request("partnerships/pa", "a-0003", member, "2024-02-01", ""),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert_eq!(several[0].name, "partnerships/pb/memberships/a-0001");
    let listed = client
        .list_memberships(pb::ListMembershipsRequest { parent: "partnerships/pa".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert_eq!(listed.iter().map(|m| m.agency.as_str()).collect::<Vec<_>>(), ["a-0001", "a-0002", "a-0003"]);
}
}

backend_test! {
/// Every rule of a batch create: the code, the entry's field path, and nothing stored.
async fn invalid_batch_creates_name_the_entry_and_store_nothing() {
    let app = spawn_app().await;
    app.create_agency("nhs-a").await;
    app.create_partnership("pa").await;
    let mut client = app.registry();
    let before = app.snapshot().await;

    let mut bad_sector = agencies_batch(&["x-0", "x-1", "x-2", "x-3"]);
    bad_sector.requests[3].agency.as_mut().unwrap().sector = 99;
    bad_sector.requests[1].agency_id = "Bad Id".into();
    let mut child_id = agencies_batch(&["x-0", "x-1"]);
    child_id.requests[1].request_id = "r-1".into();
    let too_many: Vec<String> = (0..1001).map(|i| format!("m-{i}")).collect();
    let cases: Vec<(pb::BatchCreateAgenciesRequest, Code, &str, Vec<&str>)> = vec![
        (bad_sector, Code::InvalidArgument, "INVALID_REQUEST", vec!["requests[1].agency_id", "requests[3].agency.sector"]),
        (agencies_batch(&["x-0", "x-1", "x-0"]), Code::InvalidArgument, "INVALID_REQUEST", vec!["requests[2].agency_id"]),
        (agencies_batch(&[]), Code::InvalidArgument, "INVALID_REQUEST", vec!["requests"]),
        (
            agencies_batch(&too_many.iter().map(String::as_str).collect::<Vec<_>>()),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            vec!["requests"],
        ),
        (child_id, Code::InvalidArgument, "INVALID_REQUEST", vec!["requests[1].request_id"]),
        (
            pb::BatchCreateAgenciesRequest { request_id: "has space".into(), ..agencies_batch(&["x-0"]) },
            Code::InvalidArgument,
            "INVALID_REQUEST",
            vec!["request_id"],
        ),
    ];
    for (request, code, reason, fields) in cases {
        let err = client.batch_create_agencies(request.clone()).await.unwrap_err();
        let mut got: Vec<String> = err
            .get_error_details()
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, fields, "{:?}", err);
        assert_eq!(err.code(), code);
        assert_eq!(err.get_error_details().error_info().unwrap().reason, reason);
    }

    // An id already taken fails the whole batch, naming the entry; the others are not created.
    let err = client.batch_create_agencies(agencies_batch(&["new-1", "new-2", "nhs-a"])).await.unwrap_err();
    assert_error(&err, Code::AlreadyExists, "AGENCY_EXISTS", &[]);
    assert_eq!(err.get_error_details().error_info().unwrap().metadata["field"], "requests[2].agency_id");
    let err = client
        .batch_create_partnerships(pb::BatchCreatePartnershipsRequest {
            requests: ["p-new", "pa"]
                .iter()
                .map(|id| pb::CreatePartnershipRequest {
                    partnership_id: id.to_string(),
                    partnership: Some(pb::Partnership { display_name: "P".into(), ..Default::default() }),
                    request_id: String::new(),
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "PARTNERSHIP_EXISTS", &[]);
    assert_eq!(err.get_error_details().error_info().unwrap().metadata["field"], "requests[1].partnership_id");

    let lead = pb::Role::Lead as i32;
    let membership_cases: Vec<(pb::BatchCreateMembershipsRequest, Code, &str, &[&str])> = vec![
        (
            pb::BatchCreateMembershipsRequest {
                parent: "partnerships/pa".into(),
                requests: vec![
                    membership_request("", "nhs-a", lead, "2024-01-01", ""),
                    membership_request("", "ghost", lead, "2024-01-01", ""),
                ],
                ..Default::default()
            },
            Code::NotFound,
            "UNKNOWN_AGENCY",
            &["requests[1].membership.agency"],
        ),
        (
            pb::BatchCreateMembershipsRequest {
                parent: "partnerships/-".into(),
                requests: vec![membership_request("partnerships/nowhere", "nhs-a", lead, "2024-01-01", "")],
                ..Default::default()
            },
            Code::NotFound,
            "UNKNOWN_PARTNERSHIP",
            &["requests[0].parent"],
        ),
        (
            pb::BatchCreateMembershipsRequest {
                parent: "partnerships/pa".into(),
                requests: vec![
                    membership_request("partnerships/other", "nhs-a", lead, "2024-01-01", ""),
                    membership_request("", "nhs-a", lead, "2024-03-01", "2024-02-01"),
                ],
                ..Default::default()
            },
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["requests[0].parent", "requests[1].membership.end_date"],
        ),
        (
            pb::BatchCreateMembershipsRequest {
                parent: String::new(),
                requests: vec![
                    membership_request("partnerships/pa", "nhs-a", lead, "2024-01-01", ""),
                    membership_request("partnerships/pa", "nhs-a", lead, "2024-01-01", ""),
                ],
                ..Default::default()
            },
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &["requests[1].membership.agency"],
        ),
    ];
    for (request, code, reason, fields) in membership_cases {
        let err = client.batch_create_memberships(request.clone()).await.unwrap_err();
        assert_error(&err, code, reason, fields);
    }
    client
        .create_membership(membership_request("partnerships/pa", "nhs-a", lead, "2024-01-01", ""))
        .await
        .unwrap();
    let after_one = app.snapshot().await;
    let err = client
        .batch_create_memberships(pb::BatchCreateMembershipsRequest {
            parent: "partnerships/pa".into(),
            requests: vec![membership_request("", "nhs-a", lead, "2024-01-01", "")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "MEMBERSHIP_EXISTS", &[]);
    assert_eq!(err.get_error_details().error_info().unwrap().metadata["field"], "requests[0].membership.agency");
    assert_eq!(app.snapshot().await, after_one, "a rejected batch changed the database");
    assert_ne!(after_one, before);
}
}

backend_test! {
/// validate_only checks the batch against the stored registry and creates nothing; a
/// batch's request id makes its retry a replay.
async fn batch_creates_honour_validate_only_and_request_ids() {
    let app = spawn_app().await;
    app.create_agency("nhs-a").await;
    let mut client = app.registry();
    let before = app.snapshot().await;
    let checked = client
        .batch_create_agencies(pb::BatchCreateAgenciesRequest {
            validate_only: true,
            request_id: "agencies-1".into(),
            ..agencies_batch(&["b-1", "b-2"])
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.agencies.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["agencies/b-1", "agencies/b-2"]);
    assert_eq!(app.snapshot().await, before, "validate_only created something");
    let err = client
        .batch_create_agencies(pb::BatchCreateAgenciesRequest {
            validate_only: true,
            ..agencies_batch(&["b-1", "nhs-a"])
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "AGENCY_EXISTS", &[]);

    // The request id was not consumed by validate_only.
    let request = pb::BatchCreateAgenciesRequest { request_id: "agencies-1".into(), ..agencies_batch(&["b-1", "b-2"]) };
    let first = client.batch_create_agencies(request.clone()).await.unwrap().into_inner();
    let after = app.snapshot().await;
    assert_ne!(after, before);
    assert_eq!(client.batch_create_agencies(request.clone()).await.unwrap().into_inner(), first);
    assert_eq!(app.snapshot().await, after, "a retry creates nothing");
    let err = client
        .batch_create_agencies(pb::BatchCreateAgenciesRequest { request_id: "agencies-1".into(), ..agencies_batch(&["b-3"]) })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED", &["request_id"]);
    assert_eq!(app.snapshot().await, after);
}
}
