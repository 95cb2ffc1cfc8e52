"""Per-tool session constraints through the HTTP API, in process (the gateway and the Django API
as one ASGI app; the requests and answers the published SDK sends and reads): a budget spent
call by call, maxCalls, counters moved across tools, over-limit calls held for approval and
given back when denied, the store away failing closed, the policy's own rateLimits, and a
fetched policy sent back unchanged. Counts are in Redis with REDIS_URL (CI), else in the process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.test import override_settings

from approvals.models import Approval
from approvals.services import approval_resolve
from common import redis as common_redis
from conftest import free_port
from policies.session_counters import session_counters
from runtime.gateway import Gateway
from runtime.routes import runtime_routes
from tenancy.actor import Actor
from tenancy.models import Membership
from tests.factories import TeamFactory, UserFactory, api_key_for

pytestmark = pytest.mark.django_db(transaction=True)

AGENT = "agent-7"


@pytest.fixture(scope="module")
def app():
    return Gateway(get_asgi_application(), runtime_routes)


class Team:
    """A team of the test's own, its key and what it sends, as the SDK sends it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.team = TeamFactory()
        self.key = api_key_for(self.team)

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("198.51.100.60", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, path, json=body, headers={"X-Veto-API-Key": self.key})

        return asyncio.run(call())

    def create_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.request("POST", "/v1/policies", {"mode": "deterministic", **body})
        assert response.status_code == 201, response.text
        return response.json()

    def validate(self, tool: str, arguments: dict[str, Any], session: str | None = "s-1") -> dict[str, Any]:
        context: dict[str, Any] = {"agent_id": AGENT}
        if session is not None:
            context["session_id"] = session
        response = self.request(
            "POST", "/v1/tools/validate", {"tool_name": tool, "arguments": arguments, "context": context}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def decisions(self, tool: str, amounts: list[Any], session: str = "s-1") -> list[str]:
        return [self.validate(tool, {"amount": amount}, session)["decision"] for amount in amounts]

    def counts(self, session: str = "s-1") -> dict[str, float]:
        return asyncio.run(session_counters().used(self.team.id, AGENT, session))


@pytest.fixture
def ours(app) -> Team:
    return Team(app)


def eventually(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


BUDGET = {"toolName": "pay", "sessionConstraints": {"spendArgument": "amount", "budget": 100}}


def test_budget__calls_spend_it__refused_past_it_naming_what_is_left(ours):
    # Given pay's policy with a session budget of 100 over its amount argument
    ours.create_policy(BUDGET)
    # When a session pays 40, 40, then 30
    first, second, third = (ours.validate("pay", {"amount": amount}) for amount in (40, 40, 30))
    # Then 30 is refused, naming the budget and what is left
    assert (first["decision"], second["decision"], third["decision"]) == ("allow", "allow", "deny")
    assert "budget 100" in third["reason"]
    assert "20 left" in third["reason"]
    # And what is left can still be spent, and then nothing more
    assert ours.decisions("pay", [20, 1]) == ["allow", "deny"]
    assert ours.counts() == {"spend|pay": 100.0}


def test_budget__another_session__has_its_own(ours):
    ours.create_policy(BUDGET)
    assert ours.decisions("pay", [100, 1], session="s-1") == ["allow", "deny"]
    assert ours.decisions("pay", [100, 1], session="s-2") == ["allow", "deny"]


def test_budget__amount_missing_or_text__denied_naming_the_argument(ours):
    ours.create_policy(BUDGET)
    missing = ours.validate("pay", {})
    text = ours.validate("pay", {"amount": "40"})
    assert (missing["decision"], text["decision"]) == ("deny", "deny")
    assert "argument 'amount'" in missing["reason"] and "got missing" in missing["reason"]
    assert "got '40'" in text["reason"]
    # And nothing was spent
    assert ours.counts() == {}


def test_max_calls__third_call__denied(ours):
    ours.create_policy({"toolName": "search", "sessionConstraints": {"maxCalls": 2}})
    answers = [ours.validate("search", {"q": "x"}) for _ in range(3)]
    assert [a["decision"] for a in answers] == ["allow", "allow", "deny"]
    assert "maxCalls 2" in answers[2]["reason"]


HELD_BUDGET = {
    "toolName": "pay",
    "sessionConstraints": {"spendArgument": "amount", "budget": 100, "maxAction": "require_approval"},
}


@pytest.fixture
def admin(ours):
    """A team admin: decides approvals that name no approver group."""
    user = UserFactory()
    Membership.objects.create(user=user, team=ours.team, role=Membership.Role.ADMIN)
    return user


def test_max_action_require_approval__over_budget__held_then_denial_gives_it_back(ours, admin):
    # Given a budget whose overruns are held for a person, and 90 of it spent
    ours.create_policy(HELD_BUDGET)
    assert ours.decisions("pay", [90]) == ["allow"]
    # When a call of 50 goes over it
    held = ours.validate("pay", {"amount": 50})
    # Then it is held for approval, with its approval's id, and counted meanwhile
    assert held["decision"] == "require_approval"
    assert "budget 100" in held["reason"]
    approval = Approval.objects.get(pk=held["approval_id"])
    assert approval.status == Approval.Status.PENDING
    assert ours.counts() == {"spend|pay": 140.0}
    # When a person denies it
    approval_resolve(approval=approval, actor=Actor.person(admin), action="deny")
    # Then its 50 are given back (with Redis by the refund thread: shortly) and 10 are left
    assert eventually(lambda: ours.counts() == {"spend|pay": 90.0}), ours.counts()
    assert ours.decisions("pay", [10]) == ["allow"]


def test_max_action_require_approval__approved__the_spend_stands(ours, admin):
    # Given a call of 120 held over the budget of 100
    ours.create_policy(HELD_BUDGET)
    held = ours.validate("pay", {"amount": 120})
    assert held["decision"] == "require_approval"
    # When a person approves it
    approval_resolve(
        approval=Approval.objects.get(pk=held["approval_id"]), actor=Actor.person(admin), action="approve"
    )
    # Then its 120 stand. (Refunds are queued in order: once a later denial's 5 are back, a
    # refund of the approved call would have run too.)
    other = ours.validate("pay", {"amount": 5})
    approval_resolve(
        approval=Approval.objects.get(pk=other["approval_id"]), actor=Actor.person(admin), action="deny"
    )
    assert eventually(lambda: ours.counts() == {"spend|pay": 120.0}), ours.counts()


COUNTERS = {
    "toolName": "open_file",
    "sessionConstraints": {
        "counters": {
            "open_files": {
                "increment": ["open_file"],
                "decrement": ["close_file"],
                "max": 2,
                "maxAction": "deny",
            }
        }
    },
}


def test_counter__open_files__refused_at_max_until_one_is_closed(ours):
    # Given open_file's policy counting open files (at most 2), lowered by close_file's calls
    ours.create_policy(COUNTERS)
    # When a session opens three, closes one, opens again
    steps = [
        ("open_file", "a"),
        ("open_file", "b"),
        ("open_file", "c"),
        ("close_file", "a"),
        ("open_file", "c"),
    ]
    answers = [ours.validate(tool, {"path": path}) for tool, path in steps]
    # Then the third open is refused at the counter's max, and allowed once one is closed
    assert [a["decision"] for a in answers] == ["allow", "allow", "deny", "allow", "allow"]
    assert "Session counter 'open_files'" in answers[2]["reason"]
    assert ours.counts() == {"counter|open_file|open_files": 2.0}


def test_counter__close_file_without_a_policy__served_with_a_marker_to_ask_the_server(ours):
    # close_file has no policy, but its calls move open_file's counter: a policy of its own is
    # served with the marker that makes the SDK ask the server for its calls
    ours.create_policy(COUNTERS)
    ours.create_policy({"toolName": "close_file"})
    served = ours.request("GET", "/v1/policies/close_file").json()
    assert served["sessionConstraints"] == {
        "evaluatedBy": "server",
        "sessionCounters": ["open_file.open_files"],
    }


@contextmanager
def redis_unreachable() -> Iterator[None]:
    """REDIS_URL at a port nothing listens on (in either pass: with it, the counts go to Redis)."""
    common_redis.reset_clients()
    try:
        with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
            yield
    finally:
        common_redis.reset_clients()


def test_budget__store_unreachable__denied_fail_closed(ours):
    ours.create_policy(BUDGET)
    with redis_unreachable():
        answer = ours.validate("pay", {"amount": 1})
    assert answer["decision"] == "deny"
    assert "Session constraint check failed (fail-closed)" in answer["reason"]


def test_policy_rate_limits__session_scope__third_call_denied_with_the_sdk_wording(ours):
    # Given a policy with its own rate limit: 2 calls a minute per session
    ours.create_policy(
        {"toolName": "search", "rateLimits": [{"scope": "session", "windowSeconds": 60, "maxCalls": 2}]}
    )
    answers = [ours.validate("search", {"q": "x"}) for _ in range(3)]
    other_session = ours.validate("search", {"q": "x"}, session="s-2")
    assert [a["decision"] for a in answers] == ["allow", "allow", "deny"]
    assert answers[2]["reason"].startswith("Rate limit exceeded: max 2 calls per 60s (scope: session)")
    assert other_session["decision"] == "allow"


def test_fetched_policy__sent_back__same_constraints_and_limits_new_version(ours):
    # Given a policy with every kind of session constraint and a rate limit, whose tool also
    # lowers its own counter (so it is served with a marker too)
    session_constraints = {
        "maxCalls": 10,
        "spendArgument": "amount",
        "budget": 100,
        "maxAction": "require_approval",
        "cumulativeLimits": [{"argumentName": "quantity", "maxValue": 50}],
        "counters": {"open_files": {"increment": ["open_file"], "decrement": ["close_file"], "max": 2}},
    }
    rate_limits = [{"scope": "session", "windowSeconds": 60, "maxCalls": 5}]
    ours.create_policy(
        {"toolName": "open_file", "sessionConstraints": session_constraints, "rateLimits": rate_limits}
    )
    # When it is fetched
    served = ours.request("GET", "/v1/policies/open_file").json()
    # Then it serves them as stored, beside the server's marker
    assert served["sessionConstraints"] == {
        **session_constraints,
        "evaluatedBy": "server",
        "sessionCounters": ["open_file.open_files"],
    }
    assert served["rateLimits"] == rate_limits
    # When it is sent back as it came
    response = ours.request("PUT", "/v1/policies/open_file", served)
    assert response.status_code == 200, response.text
    updated = ours.request("GET", "/v1/policies/open_file").json()
    # Then it is a new version with the same constraints and limits
    assert updated["version"] == served["version"] + 1
    assert (updated["sessionConstraints"], updated["rateLimits"]) == (
        served["sessionConstraints"],
        served["rateLimits"],
    )
