//! Authentication and authorisation, end to end on both backends: every RPC against
//! every kind of bad credential and every role (exact code, reason and permission,
//! the database unchanged after every refused write), object-level scoping, key
//! rotation, mutual TLS, secure-by-default start-up and the audit chain.
//!
//! Keys and certificates are made at run time; nothing secret is in the repository.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use base64::Engine;
use partnership_metrics::{
    auth::{
        dev::{AccessClaims, DevCa, SigningKey, jwks},
        jwt::JwtSettings,
    },
    cli::client::ApiChannel,
    configuration::{ClientArgs, ReflectionAccess, Settings, TlsFiles},
    domain::access::Role,
    pb::{
        self, ingest_records_response::Result as Ack, record::Kind,
        registry_service_client::RegistryServiceClient, report_service_client::ReportServiceClient,
        submission_service_client::SubmissionServiceClient,
    },
    startup::Application,
};
use prost::Message;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{
    fixtures::{self, budget, contract, rec, workforce},
    helpers::{TestApp, assert_error, current_backend, spawn_app_configured},
};

const ISSUER: &str = "https://idp.test.invalid";
const AUDIENCE: &str = "partnership-metrics-test";

struct Keys {
    ed: SigningKey,
    es: SigningKey,
    rs: SigningKey,
    /// Same kid as `ed`, another key: a forgery.
    impostor: SigningKey,
    /// A kid the JWKS does not have.
    stranger: SigningKey,
}

/// Generated once per test binary (RSA generation takes a moment).
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use jsonwebtoken::Algorithm;
        Keys {
            ed: SigningKey::generate(Algorithm::EdDSA, "ed-1").unwrap(),
            es: SigningKey::generate(Algorithm::ES256, "es-1").unwrap(),
            rs: SigningKey::generate(Algorithm::RS256, "rs-1").unwrap(),
            impostor: SigningKey::generate(Algorithm::EdDSA, "ed-1").unwrap(),
            stranger: SigningKey::generate(Algorithm::EdDSA, "nobody").unwrap(),
        }
    })
}

fn claims(agency: Option<&str>, roles: &[Role]) -> AccessClaims {
    AccessClaims::new("test-client", ISSUER, AUDIENCE, agency, roles, Duration::from_secs(600))
}

fn token(agency: Option<&str>, roles: &[Role]) -> String {
    keys().ed.sign(&claims(agency, roles)).unwrap()
}

struct Secure {
    app: TestApp,
    dir: tempfile::TempDir,
}

impl Secure {
    fn jwks_path(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }
}

fn write_jwks(path: &Path, keys: &[&SigningKey]) {
    // Written beside and renamed, as a key-rotation job would, so the server never
    // reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, jwks(keys).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A server that authenticates bearer tokens (plaintext on loopback is allowed), its
/// registry set up by a registrar: the fixtures' agencies and partnership `pa`, a
/// partnership `pq` of priv-d, spare agencies for memberships, and one record of
/// nhs-a.
async fn spawn_secure() -> Secure {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    write_jwks(&dir.path().join("jwks.json"), &[&k.ed, &k.es, &k.rs]);
    let jwt =
        JwtSettings { jwks: dir.path().join("jwks.json"), issuer: ISSUER.into(), audience: AUDIENCE.into() };
    let mut app = spawn_app_configured(current_backend(), |s| s.security.jwt = Some(jwt)).await;
    app.credentials =
        partnership_metrics::cli::client::Credentials::bearer(&token(None, &[Role::Registrar])).unwrap();
    fixtures::registry(&app).await;
    app.create_partnership("pq").await;
    app.create_membership("pq", "priv-d", pb::Role::Member, "2020-01-01", "").await;
    for i in 0..SPARE_AGENCIES {
        app.create_agency(&format!("spare-{i}")).await;
    }
    SubmissionServiceClient::new(app.with_token(&token(Some("nhs-a"), &[Role::Submitter])))
        .submit_records(fixtures::submit_request("", vec![rec(Kind::WorkforceReturn(workforce()))]))
        .await
        .expect("nhs-a submits its own record");
    Secure { app, dir }
}

const SPARE_AGENCIES: usize = 40;
const NHS_A_KEY: &str = "workforce_return/pa/nhs-a/2026Q3";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    CreateAgency,
    GetAgency,
    ListAgencies,
    CreatePartnership,
    GetPartnership,
    ListPartnerships,
    CreateMembership,
    UpdateMembership,
    ListMemberships,
    BatchCreateAgencies,
    BatchCreatePartnerships,
    BatchCreateMemberships,
    SubmitRecords,
    IngestRecords,
    ListRecords,
    ListRecordRevisions,
    GetPartnershipReport,
    ListPartnershipReports,
    ExportReports,
}

const RPCS: [Rpc; 19] = [
    Rpc::CreateAgency,
    Rpc::GetAgency,
    Rpc::ListAgencies,
    Rpc::CreatePartnership,
    Rpc::GetPartnership,
    Rpc::ListPartnerships,
    Rpc::CreateMembership,
    Rpc::UpdateMembership,
    Rpc::ListMemberships,
    Rpc::BatchCreateAgencies,
    Rpc::BatchCreatePartnerships,
    Rpc::BatchCreateMemberships,
    Rpc::SubmitRecords,
    Rpc::IngestRecords,
    Rpc::ListRecords,
    Rpc::ListRecordRevisions,
    Rpc::GetPartnershipReport,
    Rpc::ListPartnershipReports,
    Rpc::ExportReports,
];

impl Rpc {
    fn writes(self) -> bool {
        matches!(
            self,
            Rpc::CreateAgency
                | Rpc::CreatePartnership
                | Rpc::CreateMembership
                | Rpc::UpdateMembership
                | Rpc::BatchCreateAgencies
                | Rpc::BatchCreatePartnerships
                | Rpc::BatchCreateMemberships
                | Rpc::SubmitRecords
                | Rpc::IngestRecords
        )
    }

    fn permission(self) -> &'static str {
        match self {
            Rpc::CreateAgency
            | Rpc::CreatePartnership
            | Rpc::CreateMembership
            | Rpc::UpdateMembership
            | Rpc::BatchCreateAgencies
            | Rpc::BatchCreatePartnerships
            | Rpc::BatchCreateMemberships => "registry.write",
            Rpc::GetAgency
            | Rpc::ListAgencies
            | Rpc::GetPartnership
            | Rpc::ListPartnerships
            | Rpc::ListMemberships => "registry.read",
            Rpc::SubmitRecords | Rpc::IngestRecords => "records.submit",
            Rpc::ListRecords | Rpc::ListRecordRevisions => "records.read",
            Rpc::GetPartnershipReport | Rpc::ListPartnershipReports | Rpc::ExportReports => "reports.read",
        }
    }
}

/// A record of nhs-a that may be submitted any number of times.
fn nhs_a_budget() -> pb::Record {
    rec(Kind::BudgetContribution(budget()))
}

fn rejected(status: tonic_types::pb::Status) -> Status {
    Status::with_details(Code::from(status.code), status.message.clone(), status.encode_to_vec().into())
}

/// Makes one valid call of `rpc` about nhs-a's data; `n` makes created ids unique.
async fn call(rpc: Rpc, ch: ApiChannel, n: usize) -> Result<(), Status> {
    let mut registry = RegistryServiceClient::new(ch.clone());
    let mut submission = SubmissionServiceClient::new(ch.clone());
    let mut reports = ReportServiceClient::new(ch);
    match rpc {
        Rpc::CreateAgency => registry
            .create_agency(pb::CreateAgencyRequest {
                agency_id: format!("new-agency-{n}"),
                agency: Some(pb::Agency {
                    display_name: "New".into(),
                    sector: pb::Sector::NhsBody as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .map(drop),
        Rpc::GetAgency => {
            registry.get_agency(pb::GetAgencyRequest { name: "agencies/nhs-a".into() }).await.map(drop)
        }
        Rpc::ListAgencies => registry.list_agencies(pb::ListAgenciesRequest::default()).await.map(drop),
        Rpc::CreatePartnership => registry
            .create_partnership(pb::CreatePartnershipRequest {
                partnership_id: format!("new-partnership-{n}"),
                partnership: Some(pb::Partnership { display_name: "New".into(), ..Default::default() }),
                request_id: String::new(),
            })
            .await
            .map(drop),
        Rpc::GetPartnership => registry
            .get_partnership(pb::GetPartnershipRequest { name: "partnerships/pa".into() })
            .await
            .map(drop),
        Rpc::ListPartnerships => {
            registry.list_partnerships(pb::ListPartnershipsRequest::default()).await.map(drop)
        }
        Rpc::CreateMembership => registry
            .create_membership(pb::CreateMembershipRequest {
                parent: "partnerships/pa".into(),
                membership: Some(pb::Membership {
                    agency: format!("spare-{}", n % SPARE_AGENCIES),
                    role: pb::Role::Member as i32,
                    start_date: "2024-01-01".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .map(drop),
        Rpc::BatchCreateAgencies => registry
            .batch_create_agencies(pb::BatchCreateAgenciesRequest {
                requests: (0..2)
                    .map(|i| pb::CreateAgencyRequest {
                        agency_id: format!("batch-agency-{n}-{i}"),
                        agency: Some(pb::Agency {
                            display_name: "New".into(),
                            sector: pb::Sector::NhsBody as i32,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::BatchCreatePartnerships => registry
            .batch_create_partnerships(pb::BatchCreatePartnershipsRequest {
                requests: vec![pb::CreatePartnershipRequest {
                    partnership_id: format!("batch-partnership-{n}"),
                    partnership: Some(pb::Partnership { display_name: "New".into(), ..Default::default() }),
                    request_id: String::new(),
                }],
                ..Default::default()
            })
            .await
            .map(drop),
        // Into pq, so that it never meets CreateMembership's memberships of pa.
        Rpc::BatchCreateMemberships => registry
            .batch_create_memberships(pb::BatchCreateMembershipsRequest {
                parent: "partnerships/pq".into(),
                requests: vec![pb::CreateMembershipRequest {
                    membership: Some(pb::Membership {
                        agency: format!("spare-{}", n % SPARE_AGENCIES),
                        role: pb::Role::Member as i32,
                        start_date: "2024-01-01".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::UpdateMembership => registry
            .update_membership(pb::UpdateMembershipRequest {
                membership: Some(pb::Membership {
                    name: "partnerships/pa/memberships/la-b".into(),
                    start_date: format!("2021-06-{:02}", n % 28 + 1),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths: vec!["start_date".into()] }),
            })
            .await
            .map(drop),
        Rpc::ListMemberships => registry
            .list_memberships(pb::ListMembershipsRequest {
                parent: "partnerships/pa".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::SubmitRecords => {
            submission.submit_records(fixtures::submit_request("", vec![nhs_a_budget()])).await.map(drop)
        }
        Rpc::IngestRecords => {
            let batch = pb::IngestRecordsRequest {
                validate_only: false,
                request_id: String::new(),
                records: vec![nhs_a_budget()],
            };
            let mut acks = submission.ingest_records(tokio_stream::iter([batch])).await?.into_inner();
            match acks.message().await?.and_then(|a| a.result) {
                Some(Ack::Accepted(_)) => Ok(()),
                Some(Ack::Rejected(status)) => Err(rejected(status)),
                None => Err(Status::internal("no acknowledgement")),
            }
        }
        Rpc::ListRecords => submission.list_records(pb::ListRecordsRequest::default()).await.map(drop),
        Rpc::ListRecordRevisions => submission
            .list_record_revisions(pb::ListRecordRevisionsRequest {
                key: NHS_A_KEY.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::GetPartnershipReport => reports
            .get_partnership_report(pb::GetPartnershipReportRequest {
                partnership: "pa".into(),
                period: "2026Q3".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ListPartnershipReports => reports
            .list_partnership_reports(pb::ListPartnershipReportsRequest {
                partnership: "pa".into(),
                start_period: "2026Q1".into(),
                end_period: "2026Q3".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ExportReports => {
            let mut stream = reports
                .export_reports(pb::ExportReportsRequest { period: "2026Q3".into(), ..Default::default() })
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
    }
}

/// The callers of the matrix: a role, and the agency it acts for.
const ROLES: [(&str, Role, Option<&str>); 7] = [
    ("submitter of nhs-a", Role::Submitter, Some("nhs-a")),
    ("reader of nhs-a", Role::Reader, Some("nhs-a")),
    ("analyst", Role::Analyst, None),
    ("auditor", Role::Auditor, None),
    ("registrar", Role::Registrar, None),
    ("submitter of priv-d", Role::Submitter, Some("priv-d")),
    ("reader of priv-d", Role::Reader, Some("priv-d")),
];

/// Whether the caller may make the call about nhs-a's data (methodology of the
/// security issue's table; priv-d is in no partnership with nhs-a).
fn allowed(rpc: Rpc, role: Role, agency: Option<&str>) -> bool {
    let own = agency == Some("nhs-a");
    match rpc {
        Rpc::CreateAgency
        | Rpc::CreatePartnership
        | Rpc::CreateMembership
        | Rpc::UpdateMembership
        | Rpc::BatchCreateAgencies
        | Rpc::BatchCreatePartnerships
        | Rpc::BatchCreateMemberships => role == Role::Registrar,
        // A scoped reader reads its own agency and lists only it.
        Rpc::GetAgency => role == Role::Analyst || (role == Role::Reader && own),
        Rpc::ListAgencies | Rpc::ListPartnerships | Rpc::ExportReports => {
            matches!(role, Role::Analyst | Role::Reader)
        }
        Rpc::GetPartnership
        | Rpc::ListMemberships
        | Rpc::GetPartnershipReport
        | Rpc::ListPartnershipReports => role == Role::Analyst || (role == Role::Reader && own),
        Rpc::SubmitRecords | Rpc::IngestRecords | Rpc::ListRecordRevisions => {
            (role == Role::Submitter && own) || (rpc == Rpc::ListRecordRevisions && role == Role::Auditor)
        }
        // With no filter, a submitter lists its own records.
        Rpc::ListRecords => matches!(role, Role::Submitter | Role::Auditor),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Tokens that must authenticate nobody, each with the reason it is refused.
fn bad_tokens() -> Vec<(&'static str, String, &'static str)> {
    let k = keys();
    let roles = [Role::Registrar, Role::Analyst, Role::Auditor];
    let good = claims(Some("nhs-a"), &roles);
    let mut expired = good.clone();
    expired.exp = expired.iat - 120;
    let mut early = good.clone();
    early.nbf = Some(early.iat + 600);
    let mut issuer = good.clone();
    issuer.iss = "https://someone-else.invalid".into();
    let mut audience = good.clone();
    audience.aud = "another-service".into();
    let valid = k.ed.sign(&good).unwrap();
    let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
    let mut escalated = good.clone();
    escalated.roles.push("submitter".into());
    escalated.agency_id = Some("priv-d".into());
    parts[1] = b64(&serde_json::to_vec(&escalated).unwrap());
    let tampered = parts.join(".");
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"ed-1"}"#),
        b64(&serde_json::to_vec(&good).unwrap())
    );
    // The classic confusion: HMAC keyed with the RSA key's public half.
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some("rs-1".into());
    let public = serde_json::to_vec(&k.rs.jwk().unwrap()).unwrap();
    let hs256 =
        jsonwebtoken::encode(&hs_header, &good, &jsonwebtoken::EncodingKey::from_secret(&public).unwrap())
            .unwrap();
    vec![
        ("expired", k.ed.sign(&expired).unwrap(), "TOKEN_EXPIRED"),
        ("not yet valid", k.ed.sign(&early).unwrap(), "TOKEN_NOT_YET_VALID"),
        ("wrong issuer", k.ed.sign(&issuer).unwrap(), "TOKEN_WRONG_ISSUER"),
        ("wrong audience", k.ed.sign(&audience).unwrap(), "TOKEN_WRONG_AUDIENCE"),
        ("unknown kid", k.stranger.sign(&good).unwrap(), "TOKEN_UNKNOWN_KEY"),
        ("signed by another key", k.impostor.sign(&good).unwrap(), "TOKEN_INVALID"),
        ("alg none", none, "TOKEN_INVALID"),
        ("tampered payload", tampered, "TOKEN_INVALID"),
        ("HS256 with the public key", hs256, "TOKEN_INVALID"),
        ("not a JWT", "definitely-not-a-jwt".into(), "TOKEN_INVALID"),
    ]
}

/// Runs `rpc` as `ch` expecting a refusal; checks that a refused write stored
/// nothing.
async fn expect_refused(app: &TestApp, rpc: Rpc, ch: ApiChannel, n: usize, who: &str) -> Status {
    let before = if rpc.writes() { Some(app.snapshot().await) } else { None };
    let status = call(rpc, ch, n).await.expect_err(&format!("{rpc:?} as {who} must be refused"));
    if let Some(before) = before {
        assert_eq!(app.snapshot().await, before, "{rpc:?} as {who} changed the database");
    }
    status
}

backend_test! {
    async fn every_rpc_refuses_bad_credentials_and_allows_exactly_the_roles_table() {
        let s = spawn_secure().await;
        let app = &s.app;
        let mut n = 0;
        for rpc in RPCS {
            n += 1;
            let status = expect_refused(app, rpc, app.channel_with_no_token(), n, "nobody").await;
            assert_error(&status, Code::Unauthenticated, "CREDENTIALS_MISSING", &[]);
            for (what, bad, reason) in bad_tokens() {
                n += 1;
                let status = expect_refused(app, rpc, app.with_token(&bad), n, what).await;
                assert_error(&status, Code::Unauthenticated, reason, &[]);
                assert!(!status.message().contains(&bad), "the token is echoed in {status:?}");
            }
            for (who, role, agency) in ROLES {
                n += 1;
                let ch = app.with_token(&token(agency, &[role]));
                if allowed(rpc, role, agency) {
                    call(rpc, ch, n).await.unwrap_or_else(|e| panic!("{rpc:?} as {who}: {e:?}"));
                } else {
                    let status = expect_refused(app, rpc, ch, n, who).await;
                    assert_error(&status, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
                    let info = status.get_error_details().error_info().cloned().unwrap();
                    assert_eq!(info.metadata["permission"], rpc.permission(), "{rpc:?} as {who}");
                }
            }
        }
        // Every algorithm the JWKS publishes verifies.
        let k = keys();
        for key in [&k.ed, &k.es, &k.rs] {
            let t = key.sign(&claims(None, &[Role::Analyst])).unwrap();
            call(Rpc::ListPartnerships, app.with_token(&t), 0).await.unwrap_or_else(|e| panic!("{}: {e:?}", key.kid));
        }
    }
}

backend_test! {
    async fn a_partnership_the_caller_may_not_see_is_refused_alike_whether_or_not_it_exists() {
        let s = spawn_secure().await;
        let reader = s.app.with_token(&token(Some("priv-d"), &[Role::Reader]));
        let mut reports = ReportServiceClient::new(reader.clone());
        let ask = |p: &str| pb::GetPartnershipReportRequest { partnership: p.into(), period: "2026Q3".into(), ..Default::default() };
        let exists = reports.get_partnership_report(ask("pa")).await.unwrap_err();
        let missing = reports.get_partnership_report(ask("no-such")).await.unwrap_err();
        assert_error(&exists, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        assert_error(&missing, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        assert_eq!(
            exists.message().replace("partnership pa", "partnership X"),
            missing.message().replace("partnership no-such", "partnership X")
        );
        // Even with another field bad, the partnership is refused before it is looked up.
        let mut bad_period = ask("no-such");
        bad_period.period = "2026Q9".into();
        let e = reports.get_partnership_report(bad_period).await.unwrap_err();
        assert_error(&e, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        let mut registry = RegistryServiceClient::new(reader);
        for name in ["partnerships/pa", "partnerships/no-such"] {
            let e = registry.get_partnership(pb::GetPartnershipRequest { name: name.into() }).await.unwrap_err();
            assert_error(&e, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        }
        // An analyst sees everything, so learns that it does not exist.
        let analyst = s.app.with_token(&token(None, &[Role::Analyst]));
        let e = ReportServiceClient::new(analyst).get_partnership_report(ask("no-such")).await.unwrap_err();
        assert_error(&e, Code::NotFound, "UNKNOWN_PARTNERSHIP", &["partnership"]);
    }
}

backend_test! {
    async fn scoped_callers_see_only_their_agencys_data() {
        let s = spawn_secure().await;
        // priv-d's reader: exports and lists only pq; pa stays out.
        let reader = s.app.with_token(&token(Some("priv-d"), &[Role::Reader]));
        let mut stream = ReportServiceClient::new(reader.clone())
            .export_reports(pb::ExportReportsRequest { period: "2026Q3".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let mut exported = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            exported.push(m.report.unwrap().partnership);
        }
        assert_eq!(exported, ["pq"]);
        let listed = RegistryServiceClient::new(reader.clone())
            .list_partnerships(pb::ListPartnershipsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.partnerships.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["partnerships/pq"]);
        let agencies = RegistryServiceClient::new(reader).list_agencies(pb::ListAgenciesRequest::default()).await.unwrap().into_inner();
        assert_eq!(agencies.agencies.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["agencies/priv-d"]);

        // A submitter lists its own records; naming another agency is refused.
        let la_b = s.app.with_token(&token(Some("la-b"), &[Role::Submitter]));
        let mut la_b_records = SubmissionServiceClient::new(la_b);
        let mine = la_b_records.list_records(pb::ListRecordsRequest::default()).await.unwrap().into_inner();
        assert!(mine.records.is_empty(), "la-b has no records yet: {:?}", mine.records);
        let e = la_b_records
            .list_records(pb::ListRecordsRequest { agency: "nhs-a".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_error(&e, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        for key in [NHS_A_KEY, "workforce_return/pa/la-b/2026Q3"] {
            let e = la_b_records
                .list_record_revisions(pb::ListRecordRevisionsRequest { key: key.into(), ..Default::default() })
                .await
                .unwrap_err();
            assert_error(&e, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        }
        let nhs_a = s.app.with_token(&token(Some("nhs-a"), &[Role::Submitter]));
        let theirs = SubmissionServiceClient::new(nhs_a).list_records(pb::ListRecordsRequest::default()).await.unwrap().into_inner();
        assert_eq!(theirs.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), [NHS_A_KEY]);
    }
}

backend_test! {
    async fn one_record_of_another_agency_refuses_the_whole_batch_and_the_stream_goes_on() {
        let s = spawn_secure().await;
        let mut sub = SubmissionServiceClient::new(s.app.with_token(&token(Some("nhs-a"), &[Role::Submitter])));
        let mut other = budget();
        other.agency = "la-b".into();
        let before = s.app.snapshot().await;
        let e = sub
            .submit_records(fixtures::submit_request("r-1", vec![nhs_a_budget(), rec(Kind::BudgetContribution(other.clone()))]))
            .await
            .unwrap_err();
        assert_error(&e, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        let info = e.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.metadata["field"], "records[1].budget_contribution.agency");
        assert_eq!(s.app.snapshot().await, before, "nothing of the batch is stored, the request id is not taken");

        let batches = [
            pb::IngestRecordsRequest { validate_only: false, request_id: String::new(), records: vec![rec(Kind::BudgetContribution(other))] },
            pb::IngestRecordsRequest { validate_only: false, request_id: String::new(), records: vec![nhs_a_budget()] },
        ];
        let mut acks = sub.ingest_records(tokio_stream::iter(batches)).await.unwrap().into_inner();
        let first = acks.message().await.unwrap().unwrap();
        let Some(Ack::Rejected(status)) = first.result else { panic!("batch 0 must be rejected: {first:?}") };
        assert_error(&rejected(status), Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        let second = acks.message().await.unwrap().unwrap();
        assert!(matches!(second.result, Some(Ack::Accepted(_))), "the stream goes on: {second:?}");
        assert!(acks.message().await.unwrap().is_none());
    }
}

backend_test! {
    async fn an_agency_may_not_replace_a_record_another_agency_reported() {
        let s = spawn_secure().await;
        let nhs_a = SubmissionServiceClient::new(s.app.with_token(&token(Some("nhs-a"), &[Role::Submitter])));
        nhs_a.clone().submit_records(fixtures::submit_request("", vec![rec(Kind::ServiceContract(contract()))])).await.unwrap();
        // la-b claims the same contract key as its own commission.
        let mut hijack = contract();
        hijack.commissioner = "la-b".into();
        hijack.provider = "priv-d".into();
        let before = s.app.snapshot().await;
        let e = SubmissionServiceClient::new(s.app.with_token(&token(Some("la-b"), &[Role::Submitter])))
            .submit_records(fixtures::submit_request("", vec![nhs_a_budget_for("la-b"), rec(Kind::ServiceContract(hijack))]))
            .await
            .unwrap_err();
        assert_error(&e, Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        let info = e.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.metadata["field"], "records[1].service_contract");
        assert_eq!(info.metadata["key"], "service_contract/pa/c1");
        assert_eq!(s.app.snapshot().await, before);
        // Its own agency may correct it, and the trail says who wrote each version.
        let mut corrected = contract();
        corrected.annual_value_pence += 1;
        nhs_a.clone().submit_records(fixtures::submit_request("fix-1", vec![rec(Kind::ServiceContract(corrected))])).await.unwrap();
        let auditor = SubmissionServiceClient::new(s.app.with_token(&token(None, &[Role::Auditor])));
        let trail = auditor
            .clone()
            .list_record_revisions(pb::ListRecordRevisionsRequest { key: "service_contract/pa/c1".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(trail.revisions.len(), 2);
        for r in &trail.revisions {
            assert_eq!((r.client_id.as_str(), r.client_agency.as_str()), ("test-client", "nhs-a"));
        }
        assert_eq!(trail.revisions[1].request_id, "fix-1");
    }
}

fn nhs_a_budget_for(agency: &str) -> pb::Record {
    let mut b = budget();
    b.agency = agency.into();
    rec(Kind::BudgetContribution(b))
}

backend_test! {
    async fn keys_rotate_without_a_restart() {
        let s = spawn_secure().await;
        let k = keys();
        let new_key = SigningKey::generate(jsonwebtoken::Algorithm::EdDSA, "ed-2").unwrap();
        let with = |key: &SigningKey| s.app.with_token(&key.sign(&claims(None, &[Role::Analyst])).unwrap());
        let status = call(Rpc::ListPartnerships, with(&new_key), 0).await.unwrap_err();
        assert_error(&status, Code::Unauthenticated, "TOKEN_UNKNOWN_KEY", &[]);
        // Rotate: publish ed-2, withdraw ed-1.
        write_jwks(&s.jwks_path(), &[&new_key, &k.es, &k.rs]);
        // A token naming the new kid makes the server look at the file at once.
        call(Rpc::ListPartnerships, with(&new_key), 0).await.expect("the new key works at once");
        let old = with(&k.ed);
        let status = call(Rpc::ListPartnerships, old, 0).await.unwrap_err();
        assert_error(&status, Code::Unauthenticated, "TOKEN_UNKNOWN_KEY", &[]);
    }
}

backend_test! {
    async fn reflection_needs_a_caller_unless_public_and_health_is_open() {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest};
        let s = spawn_secure().await;
        let ask = || tokio_stream::iter([ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) }]);
        let e = ServerReflectionClient::new(s.app.channel_with_no_token()).server_reflection_info(ask()).await.unwrap_err();
        assert_error(&e, Code::Unauthenticated, "CREDENTIALS_MISSING", &[]);
        let mut ok = ServerReflectionClient::new(s.app.with_token(&token(Some("nhs-a"), &[]))).server_reflection_info(ask()).await.unwrap().into_inner();
        assert!(ok.message().await.unwrap().is_some(), "any authenticated caller may reflect");
        let health = HealthClient::new(s.app.channel_with_no_token()).check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(health.into_inner().status, 1, "SERVING, without credentials");

        let dir = tempfile::tempdir().unwrap();
        write_jwks(&dir.path().join("jwks.json"), &[&keys().ed]);
        let jwt = JwtSettings { jwks: dir.path().join("jwks.json"), issuer: ISSUER.into(), audience: AUDIENCE.into() };
        let public = spawn_app_configured(current_backend(), |st| {
            st.security.jwt = Some(jwt);
            st.security.reflection = Some(ReflectionAccess::Public);
        })
        .await;
        let mut ok = ServerReflectionClient::new(public.channel_with_no_token()).server_reflection_info(ask()).await.unwrap().into_inner();
        assert!(ok.message().await.unwrap().is_some(), "--reflection public");
    }
}

/// TLS files for a server and clients, from one development CA.
struct Pki {
    dir: tempfile::TempDir,
    ca: DevCa,
}

impl Pki {
    fn new() -> Pki {
        Pki { dir: tempfile::tempdir().unwrap(), ca: DevCa::new("test CA").unwrap() }
    }

    fn put(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn server_files(&self, mutual: bool) -> TlsFiles {
        let server = self.ca.server_certificate(&[]).unwrap();
        TlsFiles {
            cert: self.put("server.pem", &server.cert),
            key: self.put("server.key", &server.key),
            client_ca: mutual.then(|| self.put("ca.pem", self.ca.pem())),
        }
    }

    /// Client settings for the server at `addr`, with a client certificate if given.
    fn client(&self, addr: std::net::SocketAddr, name: &str, cert: Option<(&str, &str)>) -> ClientArgs {
        let (client_cert, client_key) = match cert {
            Some((c, k)) => {
                (Some(self.put(&format!("{name}.pem"), c)), Some(self.put(&format!("{name}.key"), k)))
            }
            None => (None, None),
        };
        ClientArgs {
            target: Some(format!("https://localhost:{}", addr.port())),
            ca_cert: Some(self.put("trusted-ca.pem", self.ca.pem())),
            client_cert,
            client_key,
            ..ClientArgs::default()
        }
    }
}

backend_test! {
    async fn client_certificates_name_their_agency_and_untrusted_ones_fail_the_handshake() {
        let pki = Pki::new();
        let tls = pki.server_files(true);
        let app = spawn_app_configured(current_backend(), |s| s.security.tls = Some(tls)).await;
        let nhs_a = pki.ca.agency_certificate("nhs-a").unwrap();
        let args = pki.client(app.addr, "nhs-a", Some((&nhs_a.cert, &nhs_a.key)));
        let mut sub = SubmissionServiceClient::new(args.connect().await.unwrap());
        // Authenticated as nhs-a with the default roles: listing its own records works.
        let mine = sub.list_records(pb::ListRecordsRequest::default()).await.unwrap().into_inner();
        assert!(mine.records.is_empty());
        // It is a submitter and a reader, not a registrar.
        let e = RegistryServiceClient::new(args.connect().await.unwrap())
            .create_agency(pb::CreateAgencyRequest { agency_id: "x".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_error(&e, Code::PermissionDenied, "PERMISSION_DENIED", &[]);

        // Trusted, but without an agency SAN: authenticates nobody.
        let anonymous = pki.ca.client_certificate("someone", &["https://example.invalid/x".into()]).unwrap();
        let args = pki.client(app.addr, "anonymous", Some((&anonymous.cert, &anonymous.key)));
        let e = SubmissionServiceClient::new(args.connect().await.unwrap())
            .list_records(pb::ListRecordsRequest::default())
            .await
            .unwrap_err();
        assert_error(&e, Code::Unauthenticated, "CERTIFICATE_UNRECOGNISED", &[]);

        // Signed by another CA, or no certificate at all: no connection.
        let stranger_ca = DevCa::new("stranger CA").unwrap();
        let untrusted = stranger_ca.agency_certificate("nhs-a").unwrap();
        for (name, cert) in [("untrusted", Some((untrusted.cert.as_str(), untrusted.key.as_str()))), ("no-cert", None)] {
            let args = pki.client(app.addr, name, cert);
            let outcome = match args.connect().await {
                Err(_) => None,
                Ok(ch) => Some(SubmissionServiceClient::new(ch).list_records(pb::ListRecordsRequest::default()).await),
            };
            match outcome {
                None => {}
                // Refused by the TLS handshake: the service never saw a call.
                Some(Err(status)) => {
                    assert!(status.get_error_details().error_info().is_none(), "{name}: {status:?}");
                    assert!(matches!(status.code(), Code::Unknown | Code::Unavailable), "{name}: {status:?}");
                }
                Some(Ok(_)) => panic!("{name}: a call succeeded without a trusted client certificate"),
            }
        }
    }
}

#[tokio::test]
async fn tls_without_client_certificates_serves_tokens_over_tls() {
    let pki = Pki::new();
    let tls = pki.server_files(false);
    let dir = tempfile::tempdir().unwrap();
    write_jwks(&dir.path().join("jwks.json"), &[&keys().ed]);
    let jwt =
        JwtSettings { jwks: dir.path().join("jwks.json"), issuer: ISSUER.into(), audience: AUDIENCE.into() };
    let app = spawn_app_configured(current_backend(), |s| {
        s.security.tls = Some(tls);
        s.security.jwt = Some(jwt);
    })
    .await;
    let mut args = pki.client(app.addr, "none", None);
    args.token = Some(token(None, &[Role::Analyst]));
    let listed = RegistryServiceClient::new(args.connect().await.unwrap())
        .list_partnerships(pb::ListPartnershipsRequest::default())
        .await
        .unwrap();
    assert!(listed.into_inner().partnerships.is_empty());
    // Plaintext to a TLS port fails.
    let plain = ClientArgs::plain(&format!("http://127.0.0.1:{}", app.addr.port()));
    let outcome = match plain.connect().await {
        Err(_) => Code::Unavailable,
        Ok(ch) => RegistryServiceClient::new(ch)
            .list_partnerships(pb::ListPartnershipsRequest::default())
            .await
            .unwrap_err()
            .code(),
    };
    assert_ne!(outcome, Code::Ok);
}

#[tokio::test]
async fn a_public_address_needs_tls_and_authentication_unless_explicitly_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let open = Settings::new("0.0.0.0:0", url.clone());
    let err = Application::build(open.clone()).await.err().expect("refused").to_string();
    assert!(
        err.contains("TLS")
            && err.contains("authentication")
            && err.contains("--insecure-allow-unauthenticated"),
        "{err}"
    );
    assert!(!dir.path().join("x.db").exists(), "refused before the database was created");
    let mut allowed = open;
    allowed.security.insecure_allow_unauthenticated = true;
    assert!(Application::build(allowed).await.is_ok());
    let loopback = Settings::new("127.0.0.1:0", url);
    assert!(Application::build(loopback).await.is_ok(), "local development keeps working");
}

backend_test! {
    async fn the_audit_chain_verifies_and_names_an_edited_or_deleted_entry() {
        let s = spawn_secure().await;
        // A mixed workload: registry writes (setup), batches, an update.
        for rpc in [Rpc::SubmitRecords, Rpc::IngestRecords, Rpc::SubmitRecords] {
            call(rpc, s.app.with_token(&token(Some("nhs-a"), &[Role::Submitter])), 0).await.unwrap();
        }
        call(Rpc::UpdateMembership, s.app.with_token(&token(None, &[Role::Registrar])), 3).await.unwrap();
        let summary = partnership_metrics::storage::verify_audit(&s.app.db.url).await.unwrap().expect("intact");
        // 4 agencies + pa + 3 memberships + pq + 1 + 40 spare + 1 batch (setup) + 4.
        assert_eq!(summary.entries, 4 + 1 + 3 + 1 + 1 + SPARE_AGENCIES as i64 + 1 + 4);

        let bin = env!("CARGO_BIN_EXE_partnership-metrics");
        let verify = || {
            std::process::Command::new(bin)
                .args(["audit", "verify", "--database-url", &s.app.db.url])
                .output()
                .expect("run audit verify")
        };
        assert!(verify().status.success(), "{:?}", verify());

        exec(&s.app, "UPDATE audit_log SET client_id = 'someone-else' WHERE seq = 7").await;
        let out = verify();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("audit entry 7 was altered"), "{stderr}");
        // Every entry of this test was written by "test-client".
        exec(&s.app, "UPDATE audit_log SET client_id = 'test-client' WHERE seq = 7").await;
        assert!(verify().status.success(), "restored");

        exec(&s.app, "DELETE FROM audit_log WHERE seq = 12").await;
        let out = verify();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("audit entry 12 is missing"));
        let broken = partnership_metrics::storage::verify_audit(&s.app.db.url).await.unwrap();
        assert_eq!(broken.unwrap_err().to_string(), "audit entry 12 is missing");
    }
}

async fn exec(app: &TestApp, sql: &str) {
    match app.db.backend {
        crate::helpers::Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
            pool.close().await;
        }
        crate::helpers::Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}
