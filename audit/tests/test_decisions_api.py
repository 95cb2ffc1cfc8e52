"""Listing and counting decisions (the SDK's listDecisions / getDecisionStats shapes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import TeamFactory, api_key_for, record_decision

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def client(team):
    client = APIClient()
    client.credentials(HTTP_X_VETO_API_KEY=api_key_for(team))
    return client


def record(team, *, tool="t", decision="allow", minutes_ago=0):
    return record_decision(
        team, tool_name=tool, decision=decision, created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )


def test_list__filters_and_pagination(team, client):
    for i in range(5):
        record(team, tool="export", decision="deny" if i % 2 else "allow", minutes_ago=i)
    record(team, tool="sms")
    record(TeamFactory(), tool="export")  # another team's: never visible

    page = client.get("/v1/decisions", {"toolName": "export", "limit": 2, "offset": 1}).json()
    assert page["pagination"] == {"total": 5, "limit": 2, "offset": 1, "hasMore": True}
    assert [d["toolName"] for d in page["data"]] == ["export", "export"]

    denied = client.get("/v1/decisions", {"decision": "deny"}).json()
    assert {d["decision"] for d in denied["data"]} == {"deny"} and denied["pagination"]["total"] == 2


def test_list__date_range(team, client):
    record(team, minutes_ago=120)
    recent = record(team, minutes_ago=1)
    start = (timezone.now() - timedelta(minutes=30)).isoformat()
    data = client.get("/v1/decisions", {"startDate": start}).json()["data"]
    assert [d["id"] for d in data] == [str(recent.id)]


def test_stats__counts_by_outcome_with_the_same_filters(team, client):
    record(team, decision="allow")
    record(team, decision="deny")
    record(team, decision="deny", tool="other")
    record(team, decision="require_approval")
    assert client.get("/v1/decisions/stats").json() == {
        "total": 4,
        "allowed": 1,
        "denied": 2,
        "requireApproval": 1,
    }
    assert client.get("/v1/decisions/stats", {"toolName": "other"}).json()["denied"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": 0}, "limit"), ({"decision": "maybe"}, "decision"), ({"startDate": "yesterday"}, "startDate")],
)
def test_list__bad_filter__400_naming_it(client, query, field):
    response = client.get("/v1/decisions", query)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{field}:")


def test_list__another_projects_id__404(client):
    response = client.get("/v1/decisions", {"projectId": str(TeamFactory().id)})
    assert response.status_code == 404


def test_detail__malformed_id__404_not_500(client):
    assert client.get("/v1/decisions/not-a-uuid").status_code == 404


def test_list__query_count_is_constant(team, client, django_assert_max_num_queries):
    for _ in range(30):
        record(team)
    # key lookup, last_used_at, count, page: independent of how many rows there are
    with django_assert_max_num_queries(5):
        client.get("/v1/decisions", {"limit": 30})
