"""Rate limits, session sequences and log/shadow modes through the live server, driven by the
published SDK's ``VetoCloudClient``. With REDIS_URL the counters and histories are in Redis
(shared by processes); without it, in the one embedded process."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from typing import Any

import pytest
from veto.cloud.client import VetoCloudClient, VetoCloudConfig

from approvals.models import Approval
from audit.models import DecisionRecord
from conftest import start_asgi_server, stop_processes
from tests.factories import TeamFactory, api_key_for, publish_rules

pytestmark = [pytest.mark.asgi_server, pytest.mark.django_db(transaction=True)]

RATE_LIMITED = """
rules:
  - id: sms_burst
    tool: send_sms
    action: deny
    message: too many texts for one agent
    rate_limits: [{scope: agent, window_seconds: 60, max_calls: 3}]
  - id: premium_numbers
    tool: send_sms
    when: "args.to.startsWith('+1900')"
    action: deny
"""


def _client(url: str, key: str) -> VetoCloudClient:
    return VetoCloudClient(VetoCloudConfig(api_key=key, base_url=url, retries=0))


def _validate_all(url: str, key: str, calls: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[Any]:
    """Send the calls one after another, as one agent does."""

    async def work() -> list[Any]:
        client = _client(url, key)
        try:
            return [await client.validate(tool, arguments, context) for tool, arguments, context in calls]
        finally:
            await client.close()

    return asyncio.run(work())


def _validate_concurrently(urls: list[str], key: str, count: int, context: dict[str, Any]) -> Counter[str]:
    """``count`` identical calls at once, spread over ``urls``; how many got each decision."""

    async def work() -> Counter[str]:
        clients = [_client(url, key) for url in urls]
        try:
            answers = await asyncio.gather(
                *(
                    clients[i % len(clients)].validate("send_sms", {"to": "+4930"}, context)
                    for i in range(count)
                )
            )
        finally:
            for client in clients:
                await client.close()
        return Counter(answer.decision for answer in answers)

    return asyncio.run(work())


@pytest.fixture
def team():
    return TeamFactory()


def test_rate_limit__fourth_call_of_an_agent__denied_while_another_agent_goes_on(asgi_server, team):
    # Given at most 3 texts per agent per minute
    publish_rules(team, RATE_LIMITED)
    key = api_key_for(team)
    bot_1, bot_2 = {"agent_id": "bot-1"}, {"agent_id": "bot-2"}

    # When bot-1 sends four and bot-2 one
    answers = _validate_all(asgi_server.url, key, [("send_sms", {"to": "+4930"}, bot_1)] * 4)
    other = _validate_all(asgi_server.url, key, [("send_sms", {"to": "+4930"}, bot_2)])

    # Then bot-1's fourth is refused with the SDK's wording, and bot-2 is unaffected
    assert [a.decision for a in answers] == ["allow", "allow", "allow", "deny"]
    assert answers[3].reason.startswith("Rate limit exceeded: max 3 calls per 60s (scope: agent)")
    assert answers[3].metadata["rule_id"] == "sms_burst"
    assert answers[3].metadata["rate_limited"] is True
    assert other[0].decision == "allow"


def test_rate_limit__call_denied_by_a_later_rule__does_not_use_up_the_allowance(asgi_server, team):
    publish_rules(team, RATE_LIMITED)
    key = api_key_for(team)
    bot = {"agent_id": "bot-1"}

    # When three premium-number texts are refused by the second rule, then three normal ones are sent
    answers = _validate_all(
        asgi_server.url,
        key,
        [("send_sms", {"to": "+1900555"}, bot)] * 3 + [("send_sms", {"to": "+4930"}, bot)] * 3,
    )

    # Then the refused ones were handed back: all three normal texts go through
    assert [a.decision for a in answers] == ["deny"] * 3 + ["allow"] * 3
    assert {a.metadata["rule_id"] for a in answers[:3]} == {"premium_numbers"}


def test_rate_limit__forty_concurrent_calls__admit_exactly_the_limit(asgi_server, team):
    publish_rules(
        team,
        "rules:\n  - id: burst\n    tool: send_sms\n    action: deny\n"
        "    rate_limits: [{scope: global, window_seconds: 60, max_calls: 10}]\n",
    )

    decisions = _validate_concurrently([asgi_server.url], api_key_for(team), 40, {})

    assert decisions == {"allow": 10, "deny": 30}


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs REDIS_URL: without Redis the counters live in the one embedded process by design; "
    ".ci/run runs this against Redis and fails on any skip there",
)
def test_rate_limit__two_server_processes_at_once__never_over_admit(team, tmp_path):
    # Given two web processes sharing Redis
    publish_rules(
        team,
        "rules:\n  - id: burst\n    tool: send_sms\n    action: deny\n"
        "    rate_limits: [{scope: agent, window_seconds: 60, max_calls: 25}]\n",
    )
    first, server_a = start_asgi_server(tmp_path / "a.log")
    second, server_b = start_asgi_server(tmp_path / "b.log")
    try:
        # When one agent fires 120 calls at both at once
        decisions = _validate_concurrently(
            [server_a.url, server_b.url], api_key_for(team), 120, {"agent_id": "bot-1"}
        )
    finally:
        stop_processes(first, second)

    # Then exactly 25 are admitted across both
    assert decisions == {"allow": 25, "deny": 95}


SEQUENCE_RULES = """
rules:
  - id: deploy_needs_tests
    tool: deploy
    action: deny
    message: run the full test suite in this session first
    requires:
      - tool: run_tests
        within: 3600
        conditions: [{field: arguments.suite, operator: equals, value: full}]
  - id: no_export_after_pii_read
    tool: export
    action: deny
    blocked_by: [{tool: read_pii}]
"""


def test_requires__deploy_after_full_tests_in_the_same_session__allowed_other_session_still_refused(
    asgi_server, team
):
    publish_rules(team, SEQUENCE_RULES)
    key = api_key_for(team)
    session_a, session_b = {"session_id": f"s-{uuid.uuid4()}"}, {"session_id": f"s-{uuid.uuid4()}"}

    answers = _validate_all(
        asgi_server.url,
        key,
        [
            ("deploy", {}, session_a),  # no tests yet
            ("run_tests", {"suite": "smoke"}, session_a),
            ("deploy", {}, session_a),  # wrong suite
            ("run_tests", {"suite": "full"}, session_a),
            ("deploy", {}, session_a),
            ("deploy", {}, session_b),  # another session has run nothing
            ("deploy", {}, {}),  # no session: no history to satisfy `requires`
        ],
    )

    assert [a.decision for a in answers] == ["deny", "allow", "deny", "allow", "allow", "deny", "deny"]
    assert answers[0].reason == "run the full test suite in this session first"


def test_blocked_by__export_after_reading_pii_in_the_session__refused(asgi_server, team):
    publish_rules(team, SEQUENCE_RULES)
    session = {"session_id": f"s-{uuid.uuid4()}"}

    answers = _validate_all(
        asgi_server.url,
        api_key_for(team),
        [("export", {}, session), ("read_pii", {"table": "customers"}, session), ("export", {}, session)],
    )

    assert [a.decision for a in answers] == ["allow", "allow", "deny"]
    assert answers[2].metadata["rule_id"] == "no_export_after_pii_read"


@pytest.mark.parametrize("mode", ["shadow", "log"])
def test_mode__log_and_shadow__answer_allow_and_record_the_real_decision(asgi_server, team, mode):
    # Given a version in shadow (or log) mode that would deny and would ask for approval
    publish_rules(
        team,
        f"mode: {mode}\nrules:\n"
        "  - {id: no_public, tool: export, when: \"args.bucket.startsWith('s3://public')\", action: deny}\n"
        "  - {id: pii, tool: export, when: 'args.include_pii', action: require_approval}\n",
    )

    denied, approval, allowed = _validate_all(
        asgi_server.url,
        api_key_for(team),
        [
            ("export", {"bucket": "s3://public-x"}, {}),
            ("export", {"bucket": "internal", "include_pii": True}, {}),
            ("export", {"bucket": "internal"}, {}),
        ],
    )

    # Then the agent is allowed each time and told what strict mode would have done
    assert [a.decision for a in (denied, approval, allowed)] == ["allow"] * 3
    assert denied.metadata["rule_id"] == "no_public"
    assert denied.metadata["enforcement"] == mode
    if mode == "shadow":
        assert denied.reason.startswith("[SHADOW MODE] Would be denied")
        assert (denied.metadata["shadow"], denied.metadata["shadow_decision"]) == (True, "deny")
        assert approval.metadata["shadow_decision"] == "require_approval"
    else:
        assert denied.reason.startswith("[LOG MODE] Would be denied")
        assert denied.metadata["blocked_in_strict_mode"] is True
    assert approval.approval_id is None
    # And the record keeps the real decisions, marked, with no approval opened
    recorded = sorted(
        DecisionRecord.objects.filter(team=team).values_list("decision", "enforcement", "rule_id")
    )
    assert recorded == [
        ("allow", mode, ""),
        ("deny", mode, "no_public"),
        ("require_approval", mode, "pii"),
    ]
    assert not Approval.objects.filter(team_id=team.id).exists()
