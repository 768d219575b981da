"""The client against a real server with TLS and tokens.

Runs when PM_TEST_CREDENTIALS names the server's `dev-credentials` directory and
PM_TEST_BIN the `partnership-metrics` binary (which mints the tokens); PM_TARGET is
the server's `localhost:PORT`. tests/api/python_client.rs sets them up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

import grpc
import pytest

from conftest import World, unique
from partnership_metrics import Client, PermissionDenied, Unauthenticated, Unavailable, pb

CREDENTIALS = os.environ.get("PM_TEST_CREDENTIALS")
BINARY = os.environ.get("PM_TEST_BIN")
pytestmark = pytest.mark.skipif(not (CREDENTIALS and BINARY),
                                reason="PM_TEST_CREDENTIALS and PM_TEST_BIN are not set: no secure server")


def token(role: str, agency: Optional[str] = None) -> str:
    """A fresh token from the credentials' signing key."""
    args = [str(BINARY), "token", "--credentials", str(CREDENTIALS), "--role", role]
    if agency:
        args += ["--agency", agency]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def connect(token: Optional[str] = None, server_name: Optional[str] = None) -> Client:
    ca = Path(str(CREDENTIALS)) / "ca.pem"
    return Client(os.environ["PM_TARGET"], token=token, ca_cert=ca, server_name=server_name, timeout=30)


@pytest.fixture
def world() -> World:
    """A partnership of two agencies, registered by a registrar."""
    w = World(partnership=unique("pa"), nhs=unique("nhs"), la=unique("la"), vol=unique("vol"), priv=unique("priv"))
    with connect(token("registrar")) as registrar:
        registrar.batch_create_agencies([{"agency_id": a, "display_name": a, "sector": "other_public_body"}
                                         for a in (w.nhs, w.la, w.vol, w.priv)])
        registrar.create_partnership(w.partnership, "Secure partnership")
        registrar.batch_create_memberships([
            {"partnership": w.partnership, "agency": w.nhs, "role": "lead", "start_date": "2020-01-01"},
            {"partnership": w.partnership, "agency": w.la, "role": "member", "start_date": "2020-01-01"},
        ])
    return w


def test_a_call_without_a_token_is_unauthenticated() -> None:
    with connect() as anonymous:
        with pytest.raises(Unauthenticated) as caught:
            list(anonymous.list_agencies())
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    with connect("not-a-jwt") as forged:
        with pytest.raises(Unauthenticated):
            forged.get_agency("anyone")


def test_each_role_may_do_its_own_calls_only(world: World) -> None:
    nhs_records = [r for r in world.records("a") if r.WhichOneof("kind") in ("workforce_return", "principles_adoption")]
    with connect(token("submitter", world.nhs)) as nhs:
        response = nhs.submit(nhs_records)
        assert (response.record_count, response.inserted_count) == (2, 2)
        la_budget = world.records("a")[8]
        with pytest.raises(PermissionDenied) as caught:
            nhs.submit([nhs_records[0], la_budget])
        assert caught.value.metadata.get("field") == "records[1].budget_contribution.agency"
        with pytest.raises(PermissionDenied) as caught:
            nhs.report(world.partnership, "2026Q3")
        assert caught.value.metadata.get("permission") == "reports.read"

        # In a stream the refused batch is an acknowledgement, and the stream goes on.
        acks = list(nhs.ingest([nhs_records[0], la_budget, nhs_records[1]], batch_size=1))
        assert [type(a.error).__name__ if a.error else "accepted" for a in acks] == [
            "accepted", "PermissionDenied", "accepted"]
        assert acks[0].accepted.replaced_count == 1

    with connect(token("analyst")) as analyst:
        report = analyst.report(world.partnership, "2026Q3")
        assert report.partnership == world.partnership and report.member_count == 2
        assert {i.id: i for i in report.indicators}["leaver_rate_annualised"].value == pytest.approx(20 / 105)
        assert world.partnership in [r.partnership for r in analyst.export("2026Q3")]


def test_the_certificate_is_checked_under_server_name() -> None:
    with connect(token("analyst"), server_name="pm.cluster.internal") as named:
        named.wait_ready(timeout=10)
        assert isinstance(list(named.list_agencies()), list)
    with connect(token("analyst"), server_name="other.cluster.internal") as wrong:
        with pytest.raises(Unavailable):
            list(wrong.list_agencies())
