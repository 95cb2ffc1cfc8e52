"""Three web nodes (``python -m veto_cloud.serve``, one worker each, on separate ports) behind HAProxy,
on the test database and one Redis: what must hold whichever node a request reaches. The checks are
benchmarks/multi_node.py's own, run there on a benchmark database as well."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.multi_node import (
    CHECK_NODE_ENV,
    HAND_OFF_BOUND,
    RATE_LIMIT,
    RATE_LIMIT_RULE,
    Cluster,
    Team,
    check_live_events,
    check_long_poll,
    check_node_killed,
    check_rate_limit,
)
from conftest import _wait_for_other_sessions_to_close, database_url_for_subprocess, subprocess_environment
from tenancy.models import Membership
from tests.factories import (
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    api_key_for,
    personal_api_key_for,
    publish_rules,
    set_live_server_password,
)

pytestmark = [
    pytest.mark.asgi_server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("REDIS_URL"),
        reason="needs REDIS_URL: several web processes share rate limits, wake-ups and live events only "
        "through Redis (without it there is one process by design); .ci/run runs this against Redis "
        "and fails on any skip there",
    ),
]

PASSWORD = "multi-node-password"
RULES = (
    "rules:\n"
    "  - {name: pii, tool: run_data_export, when: 'args.include_pii == true', action: require_approval,"
    " approvers: [compliance], timeout: 1h}\n"
    "  - {name: bucket_allowlist, tool: run_data_export, when: \"!args.bucket.startsWith('internal-')\","
    " action: deny, message: 'Exports restricted to internal-* S3 buckets'}\n" + RATE_LIMIT_RULE
)


def team_with_an_approver() -> Team:
    """A team running RULES, with a member of its compliance group who signs in and resolves."""
    team = TeamFactory()
    approver = UserFactory(username=f"approver-{uuid.uuid4().hex[:8]}")
    ApproverGroupFactory(team=team, slug="compliance").members.add(approver)
    Membership.objects.create(user=approver, team=team)
    set_live_server_password(approver, PASSWORD)
    publish_rules(team, RULES)
    return Team(
        slug=team.slug,
        api_key=api_key_for(team),
        approver_key=personal_api_key_for(approver, team),
        username=approver.username,
        password=PASSWORD,
        database_url=database_url_for_subprocess(),
    )


@pytest.fixture(scope="module")
def three_nodes(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Cluster]:
    environment = subprocess_environment(**CHECK_NODE_ENV)
    with Cluster(environment, 3, Path(tmp_path_factory.mktemp("multi-node"))) as cluster:
        yield cluster
    with django_db_blocker.unblock():
        _wait_for_other_sessions_to_close()


def test_rate_limit__one_agents_calls_round_robin_over_three_nodes__admit_exactly_the_limit(three_nodes):
    # Given a rule admitting RATE_LIMIT texts a minute per agent
    team = team_with_an_approver()
    # When one agent sends 90 of them, 10 at a time, through HAProxy's round robin
    result = check_rate_limit(three_nodes, team, calls=90)
    # Then every node took its share, and exactly the limit was admitted across them
    assert set(result["by_node"]) == {"node1", "node2", "node3"}, result
    assert result["decisions"] == {"allow": RATE_LIMIT, "deny": 90 - RATE_LIMIT}, result
    assert result["ok"], result


def test_long_poll__raised_on_a_polled_on_b_resolved_on_c__answers_at_once(three_nodes):
    # Given an approval raised through node1, long-polled on node2 (whose database recheck is 20 s)
    team = team_with_an_approver()
    # When it is approved through node3's API
    result = check_long_poll(three_nodes, team)
    # Then node2's long-poll answers approved within a second of the resolve
    assert result["nodes"] == {"raised_on": "node1", "long_polled_on": "node2", "resolved_on": "node3"}
    assert not result["answered_before_the_resolve"], result
    assert result["long_poll_status"] == 200 and result["long_poll_approval_status"] == "approved", result
    assert result["hand_off_after_resolve_response_ms"] < HAND_OFF_BOUND * 1000, result


def test_live_events__decided_on_node1__reach_socket_and_stream_on_node2_and_through_haproxy(three_nodes):
    # Given a signed-in dashboard socket and an SSE stream on node2, and a socket through HAProxy
    team = team_with_an_approver()
    # When a decision is made on node1
    result = check_live_events(three_nodes, team)
    # Then each of them shows it
    assert result["ok"], result


def test_node_killed_mid_load__every_answered_decision_recorded__survivors_take_over(
    django_db_blocker, tmp_path
):
    started = time.monotonic()
    # Given tagged validate load through HAProxy over three nodes of their own
    team = team_with_an_approver()
    with Cluster(subprocess_environment(), 3, tmp_path / "cluster") as cluster:
        # When node3 is SIGKILLed mid-load
        result = check_node_killed(cluster, team, after_kill=2.0)
    with django_db_blocker.unblock():
        _wait_for_other_sessions_to_close()
    # Then HAProxy took it out at once, nothing sent after that failed, the two others answered
    assert result["marked_down_after_ms"] < 1500, result
    assert result["failed_after_marked_down"] == 0, result
    assert result["served_by_node_during_the_kill"]["node1"] > 0, result
    assert result["served_by_node_during_the_kill"]["node2"] > 0, result
    # ... every 200 has its one decision row (and approval), every failure is a JSON 502 of
    # requests cut off on the killed node, nothing is recorded twice
    assert result["problem_count"] == 0, result["problems"]
    assert result["recorded_of_the_200s"] == result["answered_200"] >= 60, result
    assert set(result["failures"]) <= {"502 node_failed"}, result
    assert result["ok"], result
    assert time.monotonic() - started < 40
