"""The client against a real server (PM_TARGET). Each test registers its own agencies
and partnerships under fresh ids, so the tests share a server without sharing data."""

from __future__ import annotations

import sys
from typing import Iterator, List

import grpc
import pytest

from conftest import World, make_world, unique
from partnership_metrics import (COLUMNS, AlreadyExists, Client, FailedPrecondition, IngestAck, InvalidArgument,
                                 NotFound, PartnershipMetricsError, pb, report_rows, to_dataframe)


def stored(client: Client, world: World) -> List[str]:
    """Keys of the world's stored records: its partnership's, and its agencies' events."""
    keys = [r.key for r in client.list_records(partnership=world.partnership)]
    keys += [r.key for r in client.list_records(agency=world.la, kind="restructuring_event")]
    return keys


def test_submit_counts_inserted_then_replaced_and_replays_a_request_id(client: Client, world: World) -> None:
    first = client.submit(world.records("a"), request_id=unique("req"))
    assert (first.record_count, first.inserted_count, first.replaced_count) == (9, 9, 0)
    assert first.HasField("commit_time") and not first.replayed

    request_id = unique("req")
    second = client.submit(world.records("b"), request_id=request_id)
    # Contract, team, survey and event have new keys; the other five are corrections.
    assert (second.record_count, second.inserted_count, second.replaced_count) == (9, 4, 5)
    again = client.submit(world.records("b"), request_id=request_id)
    assert again.replayed and (again.inserted_count, again.replaced_count) == (4, 5)
    assert again.commit_time == second.commit_time
    with pytest.raises(InvalidArgument) as caught:
        client.submit(world.records("c"), request_id=request_id)
    assert caught.value.reason == "REQUEST_ID_REUSED"
    assert len(stored(client, world)) == 9 + 4


def test_validate_only_checks_and_counts_but_stores_nothing(client: Client, world: World) -> None:
    assert stored(client, world) == []
    dry = client.submit(world.records("a"), validate_only=True)
    assert (dry.record_count, dry.inserted_count, dry.replaced_count) == (9, 9, 0)
    assert not dry.HasField("commit_time")
    assert stored(client, world) == []
    # Nothing was stored: the real write still inserts all nine.
    real = client.submit(world.records("a"))
    assert (real.inserted_count, real.replaced_count) == (9, 0)
    assert len(stored(client, world)) == 9

    bad = world.records("a")
    bad[0].workforce_return.leavers = 1000
    with pytest.raises(InvalidArgument) as caught:
        client.submit(bad, validate_only=True)
    assert caught.value.fields == ["records[0].workforce_return.leavers"]


def test_a_bad_record_raises_invalid_argument_with_reason_and_field_path(client: Client, world: World) -> None:
    records = world.records("a")
    records[4].relationship_rating.ratee = world.nhs  # the rater rates itself
    with pytest.raises(PartnershipMetricsError) as caught:
        client.submit(records)
    err = caught.value
    assert isinstance(err, InvalidArgument)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.domain, err.reason) == ("partnership-metrics", "INVALID_RECORDS")
    assert err.fields == ["records[4].relationship_rating.ratee"]
    assert err.field_violations[0].description
    assert err.metadata["omitted_violations"] == "0"
    assert "records[4].relationship_rating.ratee" in str(err)
    assert stored(client, world) == [], "a rejected batch stores nothing"


def test_unknown_partnerships_and_stored_state_raise_their_own_classes(client: Client, world: World) -> None:
    records = world.records("a")
    records[0].workforce_return.partnership = unique("nowhere")
    with pytest.raises(NotFound) as caught:
        client.submit(records)
    assert caught.value.reason == "UNKNOWN_PARTNERSHIP"
    assert caught.value.fields == ["records[0].workforce_return.partnership"]

    with pytest.raises(NotFound) as caught:
        client.report(unique("nowhere"), "2026Q3")
    assert caught.value.reason == "UNKNOWN_PARTNERSHIP"

    # An endorsement of a version nobody adopted contradicts stored state.
    endorsement = world.records("a")[6]
    endorsement.principles_endorsement.version = 7
    with pytest.raises(FailedPrecondition) as caught:
        client.submit([endorsement])
    assert caught.value.reason == "PRECONDITION_FAILED"
    assert caught.value.fields == ["records[0].principles_endorsement.version"]

    with pytest.raises(InvalidArgument) as caught:
        client.report(world.partnership, "2026Q5")
    assert caught.value.reason == "INVALID_REPORT_REQUEST" and caught.value.fields == ["period"]
    with pytest.raises(InvalidArgument) as caught:
        client.report(world.partnership, "2026Q3", weights={"D3": -1})
    assert caught.value.fields == ["weights[D3]"]


def test_ingest_acknowledges_each_batch_and_goes_on_after_a_rejected_one(client: Client, world: World) -> None:
    def records() -> Iterator[pb.Record]:
        for suffix in ("s0", "s1", "s2"):
            batch = world.records(suffix)
            if suffix == "s1":
                batch[0].workforce_return.period = "2026Q5"
            yield from batch

    prefix = unique("load")
    acks = list(client.ingest(records(), batch_size=9, request_id_prefix=prefix))
    assert [a.batch_index for a in acks] == [0, 1, 2]
    assert [a.request_id for a in acks] == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2"]
    assert [a.ok for a in acks] == [True, False, True]
    assert all(isinstance(a, IngestAck) and a.record_count == 9 for a in acks)

    assert acks[0].accepted is not None and acks[0].error is None
    assert (acks[0].accepted.inserted_count, acks[0].accepted.replaced_count) == (9, 0)
    rejected = acks[1].error
    assert isinstance(rejected, InvalidArgument) and acks[1].accepted is None
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT and rejected.reason == "INVALID_RECORDS"
    assert rejected.fields == ["records[0].workforce_return.period"]
    assert acks[2].accepted is not None
    assert (acks[2].accepted.inserted_count, acks[2].accepted.replaced_count) == (4, 5)
    assert len(stored(client, world)) == 9 + 4, "the rejected batch stored nothing"

    # The same load again: the committed batches replay, the bad one is rejected again.
    again = list(client.ingest(records(), batch_size=9, request_id_prefix=prefix))
    assert [(a.ok, a.accepted.replayed if a.accepted else None) for a in again] == [
        (True, True), (False, None), (True, True)]


def test_ingest_cuts_batches_of_batch_size_and_validate_only_stores_nothing(client: Client, world: World) -> None:
    # 20 surveys of new keys: batches of 9, 9 and 2.
    surveys = [pb.SurveyResponse(partnership=world.partnership, period="202607", response_id=f"r{i}",
                                 respondent_agency=world.la, morale=3) for i in range(20)]
    dry = list(client.ingest(surveys, batch_size=9, validate_only=True))
    assert [(a.batch_index, a.record_count, a.accepted.inserted_count) for a in dry] == [(0, 9, 9), (1, 9, 9),
                                                                                         (2, 2, 2)]
    assert all(a.request_id == "" and not a.accepted.HasField("commit_time") for a in dry)
    assert stored(client, world) == []
    real = list(client.ingest(iter(surveys), batch_size=9))
    assert [a.accepted.inserted_count for a in real] == [9, 9, 2]
    assert len(list(client.list_records(partnership=world.partnership, kind=pb.RECORD_KIND_SURVEY_RESPONSE))) == 20
    assert list(client.ingest([], batch_size=9)) == []
    with pytest.raises(ValueError):
        list(client.ingest(surveys, batch_size=0))


def test_ingest_raises_the_error_of_the_record_source(client: Client, world: World) -> None:
    class SourceBroke(Exception):
        pass

    def records() -> Iterator[pb.Record]:
        yield from world.records("a")
        raise SourceBroke("the file ended early")

    seen: List[IngestAck] = []
    with pytest.raises(SourceBroke):
        for ack in client.ingest(records(), batch_size=9):
            seen.append(ack)
    # The first batch went out whole before the source broke.
    assert len(seen) <= 1 and all(a.ok for a in seen)


def test_records_may_be_kind_messages_or_dicts(client: Client, world: World) -> None:
    as_dict = {"budget_contribution": {"partnership": world.partnership, "agency": world.nhs, "period": "2026Q3",
                                       "pooled_pence": 5, "aligned_pence": 5}}
    event = pb.RestructuringEvent(agency=world.la, event_id="ev-x", date="2026-01-02",
                                  kind=pb.RESTRUCTURING_KIND_OTHER, staff_affected=1)
    response = client.submit([as_dict, event])
    assert (response.record_count, response.inserted_count) == (2, 2)
    kinds = sorted(r.record.WhichOneof("kind") for r in client.list_records(agency=world.la))
    assert kinds == ["restructuring_event"]
    [revision] = list(client.record_revisions(f"budget_contribution/{world.partnership}/{world.nhs}/2026Q3"))
    assert revision.revision == 1 and revision.content.budget_contribution.pooled_pence == 5
    with pytest.raises(TypeError):
        client.submit([pb.Agency(display_name="not a record")])


def test_report_is_computed_from_the_submitted_records(client: Client, world: World) -> None:
    client.submit(world.records("a"))
    report = client.report(world.partnership, "2026Q3")
    assert report.partnership == world.partnership
    assert (report.period.id, report.period.type, report.period.months) == ("2026Q3", pb.PERIOD_TYPE_QUARTER, 3)
    assert (report.period.start_date, report.period.end_date) == ("2026-07-01", "2026-09-30")
    assert report.methodology_version == "1"
    assert report.member_count == 3
    assert list(report.members) == sorted([world.nhs, world.la, world.vol])
    assert report.min_respondents == 5
    assert len(report.indicators) == 22 and [d.domain for d in report.domains] == [f"D{i}" for i in range(1, 8)]
    by_id = {i.id: i for i in report.indicators}
    # 12 x 5 leavers / 3 months over the mean of 100 and 110 staff.
    assert by_id["leaver_rate_annualised"].value == pytest.approx(20 / 105)
    assert by_id["leaver_rate_annualised"].records_used == 1
    assert by_id["pooled_budget_share"].value == pytest.approx(0.75)
    assert by_id["pooled_budget_share"].score == 1.0

    tuned = client.report(world.partnership, "2026Q3", min_respondents=1, weights={"D7": 0, "D1": 2.5})
    assert tuned.min_respondents == 1
    assert {w.domain: w.weight for w in tuned.weights} == {"D1": 2.5, "D2": 1, "D3": 1, "D4": 1, "D5": 1,
                                                          "D6": 1, "D7": 0}

    series = list(client.reports(world.partnership, "2026Q1", "2026Q4"))
    assert [r.period.id for r in series] == ["2026Q1", "2026Q2", "2026Q3", "2026Q4"]
    assert series[2] == report


def test_export_yields_every_partnership_for_the_period(client: Client) -> None:
    worlds = sorted([make_world(client), make_world(client)], key=lambda w: w.partnership)
    for world in worlds:
        client.submit(world.records("a"))
    exported = list(client.export("2026Q3", min_respondents=2))
    ids = [r.partnership for r in exported]
    assert ids == sorted(ids), "in ascending partnership id order"
    ours = [r for r in exported if r.partnership in {w.partnership for w in worlds}]
    assert [r.partnership for r in ours] == [w.partnership for w in worlds]
    assert all(r.period.id == "2026Q3" and r.min_respondents == 2 and r.member_count == 3 for r in ours)
    assert ours[0] == client.report(worlds[0].partnership, "2026Q3", min_respondents=2)
    with pytest.raises(InvalidArgument):
        list(client.export("not-a-period"))


def test_to_dataframe_gives_one_row_per_partnership_period_and_item(client: Client) -> None:
    pd = pytest.importorskip("pandas")
    world = make_world(client)
    client.submit(world.records("a"))
    reports = [client.report(world.partnership, "2026Q3"), client.report(world.partnership, "2026Q2")]
    frame = to_dataframe(reports)
    assert list(frame.columns) == COLUMNS == ["partnership", "period", "methodology_version", "item_type", "item",
                                              "domain", "value", "score", "missing_reason", "records_used", "band",
                                              "weight"]
    assert len(frame) == 2 * (22 + 7 + 1)
    assert frame.groupby("period")["item_type"].value_counts().to_dict() == {
        (p, t): n for p in ("2026Q2", "2026Q3") for t, n in (("indicator", 22), ("domain", 7), ("index", 1))}
    assert set(frame["partnership"]) == {world.partnership} and set(frame["methodology_version"]) == {"1"}

    q3 = frame[frame["period"] == "2026Q3"].set_index("item")
    leaver = q3.loc["leaver_rate_annualised"]
    assert leaver["item_type"] == "indicator" and leaver["domain"] == "D4"
    assert leaver["value"] == pytest.approx(20 / 105) and leaver["records_used"] == 1
    index = q3.loc["psi"]
    composite = reports[0].composite
    if composite.HasField("psi"):
        assert index["value"] == pytest.approx(composite.psi)
        assert index["band"] == pb.Band.Name(composite.band).removeprefix("BAND_")
    else:
        assert index["missing_reason"] == "INSUFFICIENT_DATA"
    assert q3.loc["D4", "score"] == pytest.approx(reports[0].domains[3].score)
    assert q3.loc["D4", "weight"] == 1.0
    # No workforce return for 2026Q2: the leaver rate is missing, with its reason.
    q2 = frame[(frame["period"] == "2026Q2") & (frame["item_type"] == "indicator")]
    q2_leaver = q2.set_index("item").loc["leaver_rate_annualised"]
    assert pd.isna(q2_leaver["value"]) and q2_leaver["missing_reason"] == "NO_DATA"
    # Every indicator row says what its report says, in the report's order.
    expected = [(i.id, i.value if i.HasField("value") else None, i.score if i.HasField("score") else None,
                 None if i.missing_reason == 0 else pb.MissingReason.Name(i.missing_reason)[len("MISSING_REASON_"):])
                for i in reports[1].indicators]
    actual = [(r.item, None if pd.isna(r.value) else r.value, None if pd.isna(r.score) else r.score,
               None if pd.isna(r.missing_reason) else r.missing_reason) for r in q2.itertuples()]
    assert actual == expected
    # The same rows as plain dicts, and a single report works too.
    assert len(report_rows(reports[0])) == 30 and len(to_dataframe(reports[0])) == 30


def test_to_dataframe_without_pandas_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    with pytest.raises(ImportError, match=r"partnership-metrics\[pandas\]"):
        to_dataframe([])


def test_registry_helpers_batch_create_and_report_conflicts(client: Client) -> None:
    a, b, p = unique("ag"), unique("ag"), unique("pa")
    dry = client.batch_create_agencies([{"agency_id": a, "display_name": "A", "sector": "nhs_body"}],
                                       validate_only=True)
    assert [x.name for x in dry] == [f"agencies/{a}"]
    with pytest.raises(NotFound):
        client.get_agency(a)
    created = client.batch_create_agencies([
        {"agency_id": a, "display_name": "A", "sector": "nhs_body"},
        {"agency_id": b, "display_name": "B", "sector": pb.SECTOR_OTHER_PUBLIC_BODY},
    ])
    assert [x.name for x in created] == [f"agencies/{a}", f"agencies/{b}"]
    assert client.get_agency(b).sector == pb.SECTOR_OTHER_PUBLIC_BODY
    client.batch_create_partnerships([{"partnership_id": p, "display_name": "P", "purpose": "why"}])
    assert client.get_partnership(p).purpose == "why"
    members = client.batch_create_memberships([
        {"partnership": p, "agency": a, "role": "lead", "start_date": "2020-01-01"},
        {"partnership": p, "agency": b, "role": "member", "start_date": "2021-01-01", "end_date": "2026-12-31"},
    ])
    assert [m.name for m in members] == [f"partnerships/{p}/memberships/{a}", f"partnerships/{p}/memberships/{b}"]
    assert [(m.agency, m.role, m.end_date) for m in client.list_memberships(p)] == sorted([
        (a, pb.ROLE_LEAD, ""), (b, pb.ROLE_MEMBER, "2026-12-31")]), "in agency id order"
    assert {f"agencies/{a}", f"agencies/{b}"} <= {x.name for x in client.list_agencies()}
    assert f"partnerships/{p}" in {x.name for x in client.list_partnerships()}

    with pytest.raises(AlreadyExists) as caught:
        client.create_agency(a, "again", "nhs_body")
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS and caught.value.reason
    with pytest.raises(InvalidArgument) as caught:
        client.batch_create_agencies([{"agency_id": unique("ag"), "display_name": "", "sector": "nhs_body"}])
    assert caught.value.fields == ["requests[0].agency.display_name"]
    with pytest.raises(ValueError, match="unknown sector"):
        client.create_agency(unique("ag"), "X", "hospital")
