"""Fixtures: a client of the real server at PM_TARGET, and a fresh registry per test."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Iterator, List

import pytest

from partnership_metrics import Client, pb


def unique(prefix: str) -> str:
    """An id no other test (or earlier run on the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client() -> Iterator[Client]:
    target = os.environ.get("PM_TARGET")
    if not target:
        pytest.fail("PM_TARGET is not set: run these tests against a server, e.g. PM_TARGET=127.0.0.1:50051")
    token = os.environ.get("PM_TEST_TOKEN") or None
    with Client(target, token=token, ca_cert=os.environ.get("PM_CA_CERT") or None,
                server_name=os.environ.get("PM_TLS_SERVER_NAME") or None, timeout=30) as c:
        c.wait_ready(timeout=10)
        yield c


@dataclass
class World:
    """A partnership with a lead (nhs), two members (la, vol) and a provider (priv)."""

    partnership: str
    nhs: str
    la: str
    vol: str
    priv: str

    def records(self, suffix: str) -> List[pb.Record]:
        """One valid record of each of the nine kinds; `suffix` makes the keys of four
        of them (contract, team, survey, event) new, the other five keep theirs."""
        R = pb
        p = self.partnership
        return [
            R.Record(workforce_return=R.WorkforceReturn(
                partnership=p, agency=self.nhs, period="2026Q3", headcount_start=100, headcount_end=110,
                joiners=15, leavers=5, permanent=90, fixed_term=15, agency_staff=5,
                staff_over_one_year_service=80, headcount_one_year_ago=100)),
            R.Record(service_contract=R.ServiceContract(
                partnership=p, contract_id=f"c-{suffix}", service_name="Home care", commissioner=self.nhs,
                provider=self.priv, delivery=R.DELIVERY_OUTSOURCED, annual_value_pence=12_000_000,
                start_date="2026-01-01", end_date="2027-12-31")),
            R.Record(team_composition=R.TeamComposition(
                partnership=p, team_id=f"team-{suffix}", period="202609", reporting_agency=self.nhs,
                entries=[R.TeamEntry(employer=self.nhs, employment=R.EMPLOYMENT_PERMANENT, headcount=6),
                         R.TeamEntry(employer=self.priv, employment=R.EMPLOYMENT_AGENCY_STAFF, headcount=2)])),
            R.Record(survey_response=R.SurveyResponse(
                partnership=p, period="202607", response_id=f"r-{suffix}", respondent_agency=self.la,
                shared_vision=4, shared_values=4, morale=2, loyalty=5, motivation=3)),
            R.Record(relationship_rating=R.RelationshipRating(
                partnership=p, period="2026Q3", rater=self.nhs, ratee=self.la, reliability=4,
                mission_support=4, openness=3, power_influence=3, involvement=2, resource_contribution=3)),
            R.Record(principles_adoption=R.PrinciplesAdoption(
                partnership=p, version=1, title="Our shared principles", adoption_date="2025-01-10",
                reporting_agency=self.nhs)),
            R.Record(principles_endorsement=R.PrinciplesEndorsement(
                partnership=p, version=1, agency=self.la, endorsement_date="2025-02-01")),
            R.Record(restructuring_event=R.RestructuringEvent(
                agency=self.la, event_id=f"ev-{suffix}", date="2025-11-15", kind=R.RESTRUCTURING_KIND_MERGER,
                staff_affected=12)),
            R.Record(budget_contribution=R.BudgetContribution(
                partnership=p, agency=self.la, period="2026Q3", pooled_pence=300_000, aligned_pence=100_000)),
        ]


def make_world(client: Client) -> World:
    """Registers four new agencies and a partnership with three members, one call each."""
    world = World(partnership=unique("pa"), nhs=unique("nhs"), la=unique("la"), vol=unique("vol"),
                  priv=unique("priv"))
    client.create_agency(world.nhs, "NHS trust", "nhs_body")
    client.create_agency(world.la, "Council", pb.SECTOR_LOCAL_AUTHORITY)
    client.create_agency(world.vol, "Charity", "voluntary_or_community_organisation")
    client.create_agency(world.priv, "Care Ltd", "private_provider")
    client.create_partnership(world.partnership, "Test partnership", purpose="python client tests")
    client.create_membership(world.partnership, world.nhs, "lead", "2020-01-01")
    client.create_membership(world.partnership, world.la, "member", "2021-06-01")
    client.create_membership(world.partnership, world.vol, pb.ROLE_MEMBER, "2024-01-01")
    return world


@pytest.fixture
def world(client: Client) -> World:
    return make_world(client)
