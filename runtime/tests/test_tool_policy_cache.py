"""Validate's hot path reads per-tool policies from a per-process cache: one database load per
team, dropped at commit by a write in this process and by the event (common.events) in the others."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from django.test import override_settings
from django.utils import timezone

from common import events
from common.cache import Missing
from policies import selectors, services
from runtime import validate
from tests.factories import BY_TESTS, TeamFactory, ToolPolicyFactory
from tests.faults._services import own_redis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    settings.RULE_SET_RECHECK_SECONDS = 60.0  # only invalidation may refresh within a test
    selectors.forget_cached_tool_policies()
    yield
    selectors.forget_cached_tool_policies()


@pytest.fixture
def loads(monkeypatch) -> list[uuid.UUID]:
    """Every database load of a team's active policies, by team."""
    seen: list[uuid.UUID] = []
    real = selectors._active_tool_policies_from_database

    def counting(team_id: uuid.UUID) -> Any:
        seen.append(team_id)
        return real(team_id)

    monkeypatch.setattr(selectors, "_active_tool_policies_from_database", counting)
    return seen


def refusals(team_id: uuid.UUID, calls: list[dict[str, Any]], tool: str = "transfer") -> list[Any]:
    async def decide() -> list[Any]:
        return [
            await validate.tool_policy_refusal(team_id=team_id, tool_name=tool, arguments=arguments)
            for arguments in calls
        ]

    return asyncio.run(decide())


def test_refusal__hundreds_of_calls__one_database_load(loads):
    # Given a team with an active policy
    policy = ToolPolicyFactory(tool_name="transfer")
    # When validate checks 300 calls (and other tools of the team, without a policy)
    outcomes = refusals(policy.team_id, [{"amount": n} for n in range(0, 3000, 10)])
    refusals(policy.team_id, [{"amount": 5000}], tool="send_sms")
    # Then the database was asked once, and the cached constraints still decided every call
    assert loads == [policy.team_id]
    assert sum(o is not None for o in outcomes) == 199  # 1010 ... 2990 exceed the maximum of 1000
    assert outcomes[-1].failed_constraints[0]["constraint_type"] == "maximum"


def test_refusal__write_in_this_process__seen_by_the_next_call(loads):
    policy = ToolPolicyFactory(tool_name="transfer")
    assert refusals(policy.team_id, [{"amount": 500}]) == [None]
    # When the policy is tightened through the service (the API's path)
    services.tool_policy_update(
        policy=policy,
        data={
            "mode": "deterministic",
            "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 100}],
        },
        actor=BY_TESTS,
    )
    # Then the very next call is decided by version 2
    [refusal] = refusals(policy.team_id, [{"amount": 500}])
    assert refusal is not None and refusal.decision.rule_name == "transfer policy v2"
    assert loads == [policy.team_id, policy.team_id]
    # And deactivating, then deleting, each take effect at once as well
    services.tool_policy_set_active(policy=policy, is_active=False, actor=BY_TESTS)
    assert refusals(policy.team_id, [{"amount": 500}]) == [None]
    services.tool_policy_set_active(policy=policy, is_active=True, actor=BY_TESTS)
    assert refusals(policy.team_id, [{"amount": 500}])[0] is not None
    services.tool_policy_delete(policy=policy, actor=BY_TESTS)
    assert refusals(policy.team_id, [{"amount": 500}]) == [None]


def test_refusal__rolled_back_write__cache_kept(loads):
    from django.db import transaction

    policy = ToolPolicyFactory(tool_name="transfer")
    refusals(policy.team_id, [{"amount": 1}])
    with pytest.raises(RuntimeError), transaction.atomic():
        services.tool_policy_set_active(policy=policy, is_active=False, actor=BY_TESTS)
        raise RuntimeError("rolled back")
    refusals(policy.team_id, [{"amount": 1}])
    assert loads == [policy.team_id]  # nothing committed, nothing dropped


def test_listener__event_from_another_process__drops_the_teams_cached_policies():
    # Given a worker's listener running, and two teams' policies cached in this process
    ours, theirs = ToolPolicyFactory(tool_name="transfer"), ToolPolicyFactory(team=TeamFactory())

    async def scenario(redis_url: str) -> tuple[bool, bool]:
        listener = asyncio.ensure_future(events.listen())
        try:
            await asyncio.sleep(0.5)  # subscribed
            for policy in (ours, theirs):
                await selectors.active_tool_policy(team_id=policy.team_id, tool_name=policy.tool_name)
            # When another process publishes a policy change for one team (as common.events sends it)
            change = events.Event(
                events.EventType.TOOL_POLICY_CHANGED,
                ours.team_id,
                "events",
                1,
                timezone.now(),
                {"tool_name": "transfer", "change": "updated", "version": 2},
            )
            message = {"origin": "another-process", "events": [events.encode_event(change)]}
            async with redis_asyncio.Redis.from_url(redis_url) as other_process:
                await other_process.publish(events.channel(), json.dumps(message))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                if isinstance(selectors._tool_policies.get_stale(ours.team_id), Missing):
                    break
                await asyncio.sleep(0.02)
            return (
                isinstance(selectors._tool_policies.get_stale(ours.team_id), Missing),
                isinstance(selectors._tool_policies.get_stale(theirs.team_id), Missing),
            )
        finally:
            listener.cancel()

    with own_redis() as redis, override_settings(REDIS_URL=redis.url()):
        ours_dropped, theirs_dropped = asyncio.run(scenario(redis.url()))
    # Then that team's cached policies are gone, the other's kept
    assert (ours_dropped, theirs_dropped) == (True, False)
