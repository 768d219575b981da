"""End-to-end client written against the published contract only.

It generates Python code from proto/ with grpcio-tools at run time, then drives a
running server the way an integrator would. Exits non-zero (with a message) on the
first expectation that fails.

    python client.py --target 127.0.0.1:50051 --proto-dir proto SCENARIO
"""

import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2


def generate(proto_dir, out_dir):
    from grpc_tools import protoc
    import grpc_tools

    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = [
        os.path.join("partnership", "v1", name)
        for name in ("registry.proto", "records.proto", "submission.proto", "reports.proto")
    ]
    # google/rpc/status.proto comes from googleapis-common-protos at import time; it is
    # compiled against the vendored copy only for type checking, not generated.
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{wkt}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
        + files
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out_dir)


def expect(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")


def error_details(err):
    """(code, ErrorInfo, [field paths]) of a failed call, from its rich status."""
    status = rpc_status.from_call(err)
    expect(status is not None, f"no rich status on {err.code()} {err.details()}")
    info, fields = None, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    expect(info is not None, "no ErrorInfo in the status")
    expect(info.domain == "partnership-metrics", f"ErrorInfo domain {info.domain}")
    return err.code(), info, fields


def scenario_registry(channel):
    registry_pb2 = importlib.import_module("partnership.v1.registry_pb2")
    registry_grpc = importlib.import_module("partnership.v1.registry_pb2_grpc")
    stub = registry_grpc.RegistryServiceStub(channel)

    for agency_id, sector in [("py-nhs", registry_pb2.SECTOR_NHS_BODY), ("py-la", registry_pb2.SECTOR_LOCAL_AUTHORITY),
                              ("py-vol", registry_pb2.SECTOR_VOLUNTARY_OR_COMMUNITY_ORGANISATION)]:
        created = stub.CreateAgency(registry_pb2.CreateAgencyRequest(
            agency_id=agency_id, agency=registry_pb2.Agency(display_name=agency_id.upper(), sector=sector),
            request_id=f"py-create-{agency_id}"))
        expect(created.name == f"agencies/{agency_id}", f"created name {created.name}")
        again = stub.CreateAgency(registry_pb2.CreateAgencyRequest(
            agency_id=agency_id, agency=registry_pb2.Agency(display_name=agency_id.upper(), sector=sector),
            request_id=f"py-create-{agency_id}"))
        expect(again == created, "an idempotent retry returns the first result")

    stub.CreatePartnership(registry_pb2.CreatePartnershipRequest(
        partnership_id="py-part", partnership=registry_pb2.Partnership(display_name="Py", purpose="test")))
    stub.CreateMembership(registry_pb2.CreateMembershipRequest(
        parent="partnerships/py-part", membership=registry_pb2.Membership(
            agency="py-nhs", role=registry_pb2.ROLE_LEAD, start_date="2020-01-01")))
    stub.CreateMembership(registry_pb2.CreateMembershipRequest(
        parent="partnerships/py-part", membership=registry_pb2.Membership(
            agency="py-la", role=registry_pb2.ROLE_MEMBER, start_date="2021-06-01")))

    names, token = [], ""
    while True:
        page = stub.ListAgencies(registry_pb2.ListAgenciesRequest(page_size=2, page_token=token))
        names += [a.name for a in page.agencies]
        token = page.next_page_token
        if not token:
            break
    expect([n for n in names if n.startswith("agencies/py-")] == ["agencies/py-la", "agencies/py-nhs", "agencies/py-vol"],
           f"agencies listed in id order: {names}")
    members = stub.ListMemberships(registry_pb2.ListMembershipsRequest(parent="partnerships/py-part"))
    expect([m.agency for m in members.memberships] == ["py-la", "py-nhs"], f"memberships: {members}")

    try:
        stub.CreateMembership(registry_pb2.CreateMembershipRequest(
            parent="partnerships/py-part", membership=registry_pb2.Membership(
                agency="py-vol", role=registry_pb2.ROLE_MEMBER, start_date="2021-06-01", end_date="2021-05-31")))
        expect(False, "an end date before the start is rejected")
    except grpc.RpcError as err:
        code, info, fields = error_details(err)
        expect(code == grpc.StatusCode.INVALID_ARGUMENT, f"code {code}")
        expect(fields == ["membership.end_date"], f"fields {fields}")
    try:
        stub.GetAgency(registry_pb2.GetAgencyRequest(name="agencies/nobody"))
        expect(False, "an unknown agency is NOT_FOUND")
    except grpc.RpcError as err:
        code, info, _ = error_details(err)
        expect(code == grpc.StatusCode.NOT_FOUND and info.reason == "UNKNOWN_AGENCY", f"{code} {info.reason}")


def scenario_reflection(channel):
    """Python's reflection client speaks v1alpha only."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    services = sorted(s.name for s in next(responses).list_services_response.service)
    for wanted in ("partnership.v1.RegistryService", "partnership.v1.SubmissionService",
                   "partnership.v1.ReportService", "grpc.health.v1.Health"):
        expect(wanted in services, f"{wanted} listed by reflection: {services}")

    # A client that knows nothing but reflection: the request type and the error
    # details' types all come from the server, none from generated code.
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    request_type = message_factory.GetMessageClass(pool.FindMessageTypeByName("partnership.v1.GetAgencyRequest"))
    error_info_type = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.ErrorInfo"))
    for name in ("google.rpc.BadRequest", "google.rpc.RetryInfo", "google.rpc.PreconditionFailure"):
        expect(pool.FindMessageTypeByName(name) is not None, f"{name} served by reflection")
    get_agency = channel.unary_unary(
        "/partnership.v1.RegistryService/GetAgency",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda b: b,
    )
    try:
        get_agency(request_type(name="agencies/nobody-by-reflection"))
        expect(False, "an unknown agency is NOT_FOUND")
    except grpc.RpcError as err:
        status = rpc_status.from_call(err)
        expect(status is not None, f"no rich status on {err.code()}")
        reasons = []
        for detail in status.details:
            if detail.type_url.endswith("/google.rpc.ErrorInfo"):
                info = error_info_type()
                info.ParseFromString(detail.value)
                reasons.append((info.domain, info.reason))
        expect(reasons == [("partnership-metrics", "UNKNOWN_AGENCY")], f"ErrorInfo through reflection: {reasons}")


def nine_records(records_pb2, suffix):
    """One valid record of each kind for partnership py-part (lead py-nhs, member py-la)."""
    R = records_pb2
    return [
        R.Record(workforce_return=R.WorkforceReturn(
            partnership="py-part", agency="py-nhs", period="2026Q3", headcount_start=100, headcount_end=110,
            joiners=15, leavers=5, permanent=90, fixed_term=15, agency_staff=5,
            staff_over_one_year_service=80, headcount_one_year_ago=100)),
        R.Record(service_contract=R.ServiceContract(
            partnership="py-part", contract_id=f"c-{suffix}", service_name="Home care", commissioner="py-nhs",
            provider="py-vol", delivery=R.DELIVERY_OUTSOURCED, annual_value_pence=1_200_000,
            start_date="2026-01-01", end_date="2027-12-31")),
        R.Record(team_composition=R.TeamComposition(
            partnership="py-part", team_id=f"team-{suffix}", period="202609", reporting_agency="py-nhs",
            entries=[R.TeamEntry(employer="py-nhs", employment=R.EMPLOYMENT_PERMANENT, headcount=6),
                     R.TeamEntry(employer="py-vol", employment=R.EMPLOYMENT_AGENCY_STAFF, headcount=2)])),
        R.Record(survey_response=R.SurveyResponse(
            partnership="py-part", period="202607", response_id=f"r-{suffix}", respondent_agency="py-la",
            shared_vision=4, morale=3)),
        R.Record(relationship_rating=R.RelationshipRating(
            partnership="py-part", period="2026Q3", rater="py-nhs", ratee="py-la", reliability=4,
            mission_support=4, openness=3, power_influence=3, involvement=2, resource_contribution=3)),
        R.Record(principles_adoption=R.PrinciplesAdoption(
            partnership="py-part", version=1, title="Principles", adoption_date="2025-01-10",
            reporting_agency="py-nhs")),
        R.Record(principles_endorsement=R.PrinciplesEndorsement(
            partnership="py-part", version=1, agency="py-la", endorsement_date="2025-02-01")),
        R.Record(restructuring_event=R.RestructuringEvent(
            agency="py-la", event_id=f"ev-{suffix}", date="2025-11-15", kind=R.RESTRUCTURING_KIND_MERGER,
            staff_affected=12)),
        R.Record(budget_contribution=R.BudgetContribution(
            partnership="py-part", agency="py-la", period="2026Q3", pooled_pence=300_000, aligned_pence=100_000)),
    ]


def scenario_records(channel):
    """All nine kinds by unary batch and by stream; a bad batch; the audit trail."""
    records_pb2 = importlib.import_module("partnership.v1.records_pb2")
    submission_pb2 = importlib.import_module("partnership.v1.submission_pb2")
    submission_grpc = importlib.import_module("partnership.v1.submission_pb2_grpc")
    stub = submission_grpc.SubmissionServiceStub(channel)

    first = stub.SubmitRecords(submission_pb2.SubmitRecordsRequest(
        request_id="py-unary-1", records=nine_records(records_pb2, "u")))
    expect((first.record_count, first.inserted_count, first.replaced_count) == (9, 9, 0), f"unary counts {first}")
    again = stub.SubmitRecords(submission_pb2.SubmitRecordsRequest(
        request_id="py-unary-1", records=nine_records(records_pb2, "u")))
    expect(again.replayed and not first.replayed, f"a retry says it is a replay: {again}")
    again.replayed = False
    expect(again == first, "a retried batch gets the stored response")

    bad = nine_records(records_pb2, "x")
    bad[4].relationship_rating.ratee = "py-nhs"
    try:
        stub.SubmitRecords(submission_pb2.SubmitRecordsRequest(records=bad))
        expect(False, "a rater rating itself is rejected")
    except grpc.RpcError as err:
        code, info, fields = error_details(err)
        expect(code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_RECORDS", f"{code} {info}")
        expect(fields == ["records[4].relationship_rating.ratee"], f"fields {fields}")
        expect(info.metadata["omitted_violations"] == "0", f"metadata {info.metadata}")

    def batches():
        yield submission_pb2.IngestRecordsRequest(request_id="py-s-0", records=nine_records(records_pb2, "s0"))
        broken = nine_records(records_pb2, "s1")
        broken[0].workforce_return.period = "2026Q5"
        yield submission_pb2.IngestRecordsRequest(request_id="py-s-1", records=broken)
        yield submission_pb2.IngestRecordsRequest(request_id="py-s-2", records=nine_records(records_pb2, "s2"))

    acks = list(stub.IngestRecords(batches()))
    expect([a.batch_index for a in acks] == [0, 1, 2], f"acknowledgements in order: {acks}")
    expect(acks[0].WhichOneof("result") == "accepted" and acks[2].WhichOneof("result") == "accepted", "good batches")
    expect(acks[1].WhichOneof("result") == "rejected", "the bad batch is rejected")
    expect(acks[1].rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], f"rejected code {acks[1].rejected}")
    bad_request = error_details_pb2.BadRequest()
    for detail in acks[1].rejected.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad_request)
    expect([v.field for v in bad_request.field_violations] == ["records[0].workforce_return.period"],
           f"rejected fields {bad_request}")

    kinds = stub.ListRecords(submission_pb2.ListRecordsRequest(partnership="py-part", page_size=1000))
    by_kind = sorted({r.record.WhichOneof("kind") for r in kinds.records})
    expect(len(by_kind) == 8, f"eight partnership kinds stored: {by_kind}")
    history = stub.ListRecordRevisions(submission_pb2.ListRecordRevisionsRequest(
        key="workforce_return/py-part/py-nhs/2026Q3"))
    # Written by the unary batch and by the two good streamed batches.
    expect([r.revision for r in history.revisions] == [1, 2, 3], f"revisions {history}")
    expect(history.revisions[1].previous_content == history.revisions[0].content, "previous content")

    # 150 records each with long bad fields: the error must still reach a default
    # grpcio client (8 KiB of metadata at most), listing what fits and counting the rest.
    many = []
    for i in range(150):
        r = records_pb2.Record()
        r.team_composition.partnership = "py-part"
        r.team_composition.team_id = f"team-{i}"
        r.team_composition.period = "2026Q5"
        r.team_composition.reporting_agency = "py-nhs"
        entry = r.team_composition.entries.add()
        entry.employer = "Not An Id " + "x" * 200
        many.append(r)
    try:
        stub.SubmitRecords(submission_pb2.SubmitRecordsRequest(records=many))
        expect(False, "150 bad records are rejected")
    except grpc.RpcError as err:
        code, info, fields = error_details(err)
        expect(code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_RECORDS", f"{code} {info}")
        omitted = int(info.metadata["omitted_violations"])
        expect(len(fields) >= 10 and fields[0].startswith("records[0]"), f"the first violations are listed: {fields[:3]}")
        expect(len(fields) + omitted > 300, f"every violation listed or counted: {len(fields)} + {omitted}")


def worked_example_records(R, corrected):
    """Section 8 of the methodology, first submission or corrections."""
    P = "pa-worked"
    if corrected:
        return [
            R.Record(survey_response=R.SurveyResponse(partnership=P, period="202607", response_id="r1",
                     respondent_agency="nhs-a", shared_vision=4, shared_values=4, morale=2, loyalty=5, motivation=3)),
            R.Record(workforce_return=R.WorkforceReturn(partnership=P, agency="nhs-a", period="2026Q3",
                     headcount_start=100, headcount_end=110, joiners=15, leavers=5, permanent=90, fixed_term=15,
                     agency_staff=5, staff_over_one_year_service=80, headcount_one_year_ago=100)),
        ]
    out = []
    for version, date in [(1, "2025-01-10"), (2, "2026-08-01"), (3, "2026-10-15")]:
        out.append(R.Record(principles_adoption=R.PrinciplesAdoption(
            partnership=P, version=version, title="principles", adoption_date=date, reporting_agency="nhs-a")))
    for version, agency, date in [(2, "nhs-a", "2026-08-05"), (2, "la-b", "2026-09-30"), (1, "vol-c", "2025-02-01"),
                                  (2, "vol-c", "2026-10-01"), (2, "priv-d", "2026-08-10")]:
        out.append(R.Record(principles_endorsement=R.PrinciplesEndorsement(
            partnership=P, version=version, agency=agency, endorsement_date=date)))
    for rid, period, agency, items in [
            ("r1", "202607", "nhs-a", [4, 4, 1, 5, 3]), ("r2", "202607", "la-b", [4, 5, 3, 5, 4]),
            ("r3", "202608", "vol-c", [5, 2, 3, 4, 5]), ("r4", "2026Q3", "nhs-a", [3, 0, 4, 4, 2]),
            ("r5", "202609", "la-b", [4, 0, 3, 3, 0]), ("r6", "202609", "nhs-a", [0, 0, 0, 3, 0]),
            ("r7", "2026", "nhs-a", [1, 1, 1, 1, 1]), ("r8", "202610", "la-b", [1, 1, 1, 1, 1])]:
        names = ["shared_vision", "shared_values", "morale", "loyalty", "motivation"]
        fields = {n: v for n, v in zip(names, items) if v}
        out.append(R.Record(survey_response=R.SurveyResponse(
            partnership=P, period=period, response_id=rid, respondent_agency=agency, **fields)))
    for cid, com, prov, start, end in [
            ("c1", "nhs-a", "priv-d", "2026-01-01", "2027-12-31"), ("c2", "la-b", "priv-e", "2025-01-01", "2026-06-30"),
            ("c3", "vol-c", "nhs-a", "2026-09-30", "2027-09-30"), ("c4", "la-b", "la-b", "2025-01-01", "2027-12-31"),
            ("c5", "nhs-a", "priv-e", "2026-10-01", "2027-12-31")]:
        delivery = R.DELIVERY_IN_HOUSE if com == prov else R.DELIVERY_OUTSOURCED
        out.append(R.Record(service_contract=R.ServiceContract(
            partnership=P, contract_id=cid, service_name="service", commissioner=com, provider=prov,
            delivery=delivery, annual_value_pence=100, start_date=start, end_date=end)))
    PERM, FT, AG = R.EMPLOYMENT_PERMANENT, R.EMPLOYMENT_FIXED_TERM, R.EMPLOYMENT_AGENCY_STAFF
    for tid, period, reporter, entries in [
            ("team-1", "202607", "nhs-a", [("nhs-a", PERM, 9)]),
            ("team-1", "2026Q3", "nhs-a", [("nhs-a", PERM, 3), ("la-b", PERM, 3)]),
            ("team-1", "202609", "nhs-a", [("nhs-a", PERM, 6), ("nhs-a", FT, 2), ("priv-d", AG, 2)]),
            ("team-1", "202610", "nhs-a", [("priv-d", AG, 7)]),
            ("team-2", "2026Q3", "la-b", [("la-b", PERM, 5), ("vol-c", PERM, 5)]),
            ("team-2", "2026", "la-b", [("la-b", AG, 1)])]:
        out.append(R.Record(team_composition=R.TeamComposition(
            partnership=P, team_id=tid, period=period, reporting_agency=reporter,
            entries=[R.TeamEntry(employer=e, employment=k, headcount=h) for e, k, h in entries])))
    for agency, period, hs, he, leavers, ft, ag, st in [
            ("nhs-a", "2026Q3", 100, 110, 50, 15, 5, (80, 100)), ("nhs-a", "202607", 100, 104, 2, 4, 0, None),
            ("la-b", "202607", 50, 51, 1, 3, 3, None), ("la-b", "202608", 51, 50, 1, 3, 2, None),
            ("la-b", "202609", 50, 50, 1, 5, 5, (45, 50)), ("vol-c", "202608", 20, 20, 0, 0, 0, None),
            ("priv-d", "2026Q3", 10, 10, 9, 9, 0, None)]:
        extra = {} if st is None else {"staff_over_one_year_service": st[0], "headcount_one_year_ago": st[1]}
        out.append(R.Record(workforce_return=R.WorkforceReturn(
            partnership=P, agency=agency, period=period, headcount_start=hs, headcount_end=he,
            joiners=max(he - hs + leavers, 0), leavers=leavers, permanent=he - ft - ag, fixed_term=ft,
            agency_staff=ag, **extra)))
    for period, rater, ratee, t, v in [
            ("2026Q3", "nhs-a", "la-b", 4, 3), ("202609", "nhs-a", "la-b", 3, 2), ("202608", "la-b", "nhs-a", 4, 3),
            ("2026Q3", "vol-c", "priv-d", 1, 1), ("2026Q3", "priv-d", "nhs-a", 1, 1), ("202610", "la-b", "vol-c", 1, 1)]:
        out.append(R.Record(relationship_rating=R.RelationshipRating(
            partnership=P, period=period, rater=rater, ratee=ratee, reliability=t, mission_support=t, openness=t,
            power_influence=v, involvement=v, resource_contribution=v)))
    out.append(R.Record(relationship_rating=R.RelationshipRating(
        partnership=P, period="202607", rater="nhs-a", ratee="vol-c", reliability=2, mission_support=3, openness=4,
        power_influence=1, involvement=2, resource_contribution=3)))
    for agency, eid, date in [("nhs-a", "e1", "2025-11-15"), ("nhs-a", "e2", "2026-09-30"), ("vol-c", "e3", "2025-10-01"),
                              ("la-b", "e4", "2025-09-30"), ("la-b", "e5", "2024-10-01"), ("la-b", "e6", "2024-09-30"),
                              ("priv-d", "e7", "2026-03-01")]:
        out.append(R.Record(restructuring_event=R.RestructuringEvent(
            agency=agency, event_id=eid, date=date, kind=R.RESTRUCTURING_KIND_OTHER, staff_affected=1)))
    for agency, period, pooled, aligned in [("nhs-a", "2026Q3", 300000, 100000), ("nhs-a", "202607", 999, 1),
                                            ("la-b", "2026Q3", 0, 200000)]:
        out.append(R.Record(budget_contribution=R.BudgetContribution(
            partnership=P, agency=agency, period=period, pooled_pence=pooled, aligned_pence=aligned)))
    return out


def scenario_report(channel):
    """The methodology's worked example, submitted and read back by this client."""
    registry_pb2 = importlib.import_module("partnership.v1.registry_pb2")
    registry_grpc = importlib.import_module("partnership.v1.registry_pb2_grpc")
    records_pb2 = importlib.import_module("partnership.v1.records_pb2")
    submission_pb2 = importlib.import_module("partnership.v1.submission_pb2")
    submission_grpc = importlib.import_module("partnership.v1.submission_pb2_grpc")
    reports_pb2 = importlib.import_module("partnership.v1.reports_pb2")
    reports_grpc = importlib.import_module("partnership.v1.reports_pb2_grpc")
    registry = registry_grpc.RegistryServiceStub(channel)
    for agency in ["nhs-a", "la-b", "vol-c", "priv-d", "priv-e"]:
        registry.CreateAgency(registry_pb2.CreateAgencyRequest(
            agency_id=agency, agency=registry_pb2.Agency(display_name=agency, sector=registry_pb2.SECTOR_OTHER_PUBLIC_BODY)))
    registry.CreatePartnership(registry_pb2.CreatePartnershipRequest(
        partnership_id="pa-worked", partnership=registry_pb2.Partnership(display_name="Worked example")))
    for agency, role, start, end in [("nhs-a", registry_pb2.ROLE_LEAD, "2020-01-01", ""),
                                     ("la-b", registry_pb2.ROLE_MEMBER, "2021-06-01", ""),
                                     ("vol-c", registry_pb2.ROLE_MEMBER, "2026-08-15", ""),
                                     ("priv-d", registry_pb2.ROLE_MEMBER, "2020-01-01", "2026-09-29")]:
        registry.CreateMembership(registry_pb2.CreateMembershipRequest(
            parent="partnerships/pa-worked",
            membership=registry_pb2.Membership(agency=agency, role=role, start_date=start, end_date=end)))
    submission = submission_grpc.SubmissionServiceStub(channel)
    submission.SubmitRecords(submission_pb2.SubmitRecordsRequest(records=worked_example_records(records_pb2, False)))
    fixed = submission.SubmitRecords(submission_pb2.SubmitRecordsRequest(records=worked_example_records(records_pb2, True)))
    expect(fixed.replaced_count == 2, f"two corrections: {fixed}")

    reports = reports_grpc.ReportServiceStub(channel)
    r = reports.GetPartnershipReport(reports_pb2.GetPartnershipReportRequest(partnership="pa-worked", period="2026Q3"))
    expect(list(r.members) == ["la-b", "nhs-a", "vol-c"], f"members {r.members}")
    expect(r.composite.psi == 70.96011541469436, f"PSI {r.composite.psi!r}")
    expect(r.composite.band == reports_pb2.BAND_GREEN, f"band {r.composite.band}")
    expect((r.composite.psi_min, r.composite.psi_max) == (69.11206600162971, 72.60168366764574), "sensitivity bounds")
    expect(r.composite.HasField("band_stable") and not r.composite.band_stable, "band not stable")
    expect([d.domain for d in r.composite.top_drags] == ["D4", "D6", "D5"], f"top drags {r.composite.top_drags}")
    expect([d.score for d in r.domains] == [0.7083333333333333, 0.9735449735449735, 0.6950000000000001,
                                           0.5468253968253969, 0.5925925925925926, 0.5833333333333334, 1.0],
           f"domain scores {[d.score for d in r.domains]}")
    by_id = {i.id: i for i in r.indicators}
    expect(len(by_id) == 22, "22 indicators")
    expect(by_id["leaver_rate_annualised"].value == 0.18285714285714286, "leaver rate")
    expect(by_id["survey_motivation"].missing_reason == reports_pb2.MISSING_REASON_SUPPRESSED_SMALL_NUMBER, "suppressed")
    expect(not by_id["trust_received"].HasField("value"), "trust_received has no value")
    expect([a.code for a in r.alerts] == [reports_pb2.ALERT_CODE_RESTRUCTURING_ACCELERATING,
                                         reports_pb2.ALERT_CODE_LOW_SURVEY_RESPONSE], f"alerts {r.alerts}")
    expect([k.reporting_members for k in r.coverage.kinds] == [3, 3, 2, 3, 3, 1, 2, 1, 2], f"coverage {r.coverage}")
    try:
        reports.GetPartnershipReport(reports_pb2.GetPartnershipReportRequest(partnership="pa-worked", period="2026Q5"))
        expect(False, "a bad period is rejected")
    except grpc.RpcError as err:
        code, info, fields = error_details(err)
        expect(code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_REPORT_REQUEST", f"{code} {info}")
        expect(fields == ["period"], f"fields {fields}")


SCENARIOS = {"registry": scenario_registry, "reflection": scenario_reflection, "records": scenario_records,
             "report": scenario_report}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out_dir:
        generate(args.proto_dir, out_dir)
        with grpc.insecure_channel(args.target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            for name in args.scenarios:
                SCENARIOS[name](channel)
                print(f"scenario {name}: ok")


if __name__ == "__main__":
    main()
