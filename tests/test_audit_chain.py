"""The tamper-evident chain end to end: decisions made through the live server by the published
SDK verify with the SDK's own ``compute_chain_hash``; concurrent writers keep each team's chain
gapless and ordered; approval actions and publishes are chained in their own stream."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from veto.audit.chain import compute_chain_hash
from veto.cloud.client import VetoCloudClient, VetoCloudConfig

from approvals.services import approval_resolve
from audit.models import AuditEvent, DecisionRecord
from runtime.writer import decision_writer, insert_decisions
from tenancy.actor import Actor
from tests.factories import (
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    api_key_for,
    decision_row,
    publish_rules,
)

pytestmark = pytest.mark.django_db(transaction=True)

RULES = "rules:\n  - {name: no_public, tool: export, when: \"args.bucket.startsWith('s3://public')\", action: deny}\n"


def sdk_verifies(rows: list[tuple[int, str, str, str]]) -> bool:
    """What an auditor runs: each entry's hash from its prev_hash and record, linked in order."""
    prev = ""
    for expected_sequence, (sequence, record, prev_hash, digest) in enumerate(rows, start=1):
        if sequence != expected_sequence or prev_hash != prev:
            return False
        if compute_chain_hash(prev_hash, json.loads(record)) != digest:
            return False
        prev = digest
    return True


def verify_audit(team, *extra: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", "--team", team.slug, *extra, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, (out.getvalue() + err.getvalue()).strip()


@pytest.mark.asgi_server
def test_chain__decisions_through_the_live_server__verify_with_the_sdk_function(asgi_server):
    team = TeamFactory()
    publish_rules(team, RULES)
    key = api_key_for(team)

    async def calls() -> None:
        # log_decision is the SDK's fire-and-forget wrapper of _do_log_decision; awaiting the
        # latter keeps the test deterministic.
        client = VetoCloudClient(VetoCloudConfig(api_key=key, base_url=asgi_server.url, retries=0))
        try:
            await asyncio.gather(
                *(
                    client.validate("export", {"bucket": f"s3://{kind}-{i}"})
                    for i in range(20)
                    for kind in ("public", "internal")
                )
            )
            await client._do_log_decision(
                {"tool_name": "local", "arguments": {"n": 1e20}, "decision": "allow"}
            )
        finally:
            await client.close()

    asyncio.run(calls())

    rows = list(
        DecisionRecord.objects.filter(team=team)
        .order_by("sequence")
        .values_list("sequence", "record", "prev_hash", "hash")
    )
    assert len(rows) == 41
    assert sdk_verifies(rows)
    code, output = verify_audit(team)
    assert (code, output) == (0, f"OK 41 records, head {rows[-1][3]}")
    # The record says what was decided and why
    denied = json.loads(DecisionRecord.objects.filter(team=team, decision="deny").first().record)
    assert (denied["tool"], denied["rule_id"], denied["source"], denied["policy_version"]) == (
        "export",
        "no_public",
        "server",
        1,
    )


def test_chain__parallel_writers_on_two_teams__each_chain_gapless_ordered_and_valid():
    teams = [TeamFactory(), TeamFactory()]
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def writer(team_id: uuid.UUID, worker: int) -> None:
        try:
            barrier.wait()
            for n in range(25):
                insert_decisions(
                    [decision_row(team_id, arguments={"n": worker * 1000 + n}) for _ in range(2)], []
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(teams[i % 2].id, i)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    for team in teams:
        sequences = list(
            DecisionRecord.objects.filter(team=team).order_by("sequence").values_list("sequence", flat=True)
        )
        assert sequences == list(range(1, 151))
        assert verify_audit(team)[0] == 0


def test_chain__the_gateways_writers_on_two_event_loops__interleave_two_teams_gapless():
    # Two event loops stand for two web processes: on PostgreSQL each has its own writer and
    # connection, so their batches for one team meet on that team's head lock in the database.
    teams = [TeamFactory(), TeamFactory()]
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    async def burst(worker: int) -> list[object]:
        writer = decision_writer()
        results = []
        for wave in range(10):
            results += await asyncio.gather(
                *(
                    writer.write(decision_row(teams[n % 2].id, arguments={"w": worker, "n": wave * 10 + n}))
                    for n in range(10)
                ),
                return_exceptions=True,
            )
        return results

    def process(worker: int) -> None:
        barrier.wait()
        outcomes.extend(asyncio.run(burst(worker)))

    threads = [threading.Thread(target=process, args=(worker,)) for worker in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert outcomes == [None] * 200
    for team in teams:
        rows = list(
            DecisionRecord.objects.filter(team=team)
            .order_by("sequence")
            .values_list("sequence", "record", "prev_hash", "hash")
        )
        assert [r[0] for r in rows] == list(range(1, 101))
        assert sdk_verifies(rows)
        assert {json.loads(r[1])["arguments"]["w"] for r in rows} == {0, 1}  # both writers got in


def test_events_stream__approval_actions_and_publishes__chained_and_verifiable():
    team = TeamFactory()
    group = ApproverGroupFactory(team=team, slug="compliance")
    alice = UserFactory(username="alice")
    group.members.add(alice)
    publish_rules(team, RULES)
    approval = ApprovalFactory(team=team, approver_groups=["compliance"])
    approval_resolve(
        approval=approval, actor=Actor.person(alice, remote_addr="203.0.113.7"), action="deny", comment="no"
    )

    events = list(AuditEvent.objects.filter(team=team).order_by("sequence"))
    kinds = [(e.kind, json.loads(e.record)["details"].get("action")) for e in events]
    assert kinds == [("rule_set.published", None), ("approval.action", "deny")]
    denial = json.loads(events[1].record)
    assert (denial["actor"], denial["from"], denial["details"]["comment"]) == ("alice", "203.0.113.7", "no")
    assert sdk_verifies([(e.sequence, e.record, e.prev_hash, e.hash) for e in events])
    assert verify_audit(team, "--stream", "events") == (0, f"OK 2 records, head {events[-1].hash}")


def test_events_stream__tool_policy_changes_and_a_publish_through_the_api__chained_with_who_and_from_where():
    # Given a team whose admin automation manages it with an API key, from a known address
    team = TeamFactory()
    key = api_key_for(team, name="ci-bot")
    api = Client(HTTP_X_VETO_API_KEY=key, REMOTE_ADDR="198.51.100.4")
    policy = {
        "toolName": "transfer_funds",
        "mode": "deterministic",
        "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 1000}],
    }
    raised = {**policy, "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 100000}]}

    # When it creates, raises, deactivates, reactivates and deletes a tool policy, and publishes rules
    steps = [
        api.post("/v1/policies", policy, content_type="application/json"),
        api.put("/v1/policies/transfer_funds", raised, content_type="application/json"),
        api.post("/v1/policies/transfer_funds/deactivate"),
        api.post("/v1/policies/transfer_funds/deactivate"),  # no change: not a new entry
        api.post("/v1/policies/transfer_funds/activate"),
        api.delete("/v1/policies/transfer_funds"),
        api.post("/v1/rule-sets", RULES, content_type="application/yaml"),
        # another key publishes what ci-bot uploaded (four-eyes)
        Client(HTTP_X_VETO_API_KEY=api_key_for(team, name="ci-bot-release"), REMOTE_ADDR="198.51.100.4").post(
            "/v1/rule-sets/1/publish"
        ),
    ]
    assert [r.status_code for r in steps] == [201, 200, 200, 200, 200, 204, 201, 200]

    # Then each change is an entry of the team's events chain: who, what, from where
    events = list(AuditEvent.objects.filter(team=team).order_by("sequence"))
    records = [json.loads(e.record) for e in events]
    assert [(r["kind"], r["details"].get("change")) for r in records] == [
        ("tool_policy.changed", "created"),
        ("tool_policy.changed", "updated"),
        ("tool_policy.changed", "deactivated"),
        ("tool_policy.changed", "activated"),
        ("tool_policy.changed", "deleted"),
        ("rule_set.published", None),
    ]
    assert {r["from"] for r in records} == {"198.51.100.4"}
    assert all(r["actor"].startswith("API key ci-bot") for r in records)
    # The update says what the limit became, and under which version
    updated = records[1]["details"]
    assert (updated["version"], updated["policy"]["constraints"][0]["maximum"]) == (2, 100000)
    assert sdk_verifies([(e.sequence, e.record, e.prev_hash, e.hash) for e in events])
    assert verify_audit(team, "--stream", "events") == (0, f"OK 6 records, head {events[-1].hash}")
