"""The decision writers: durable before the waiter hears back, all or nothing per row."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from approvals.models import Approval
from audit.models import DecisionRecord, context_columns
from runtime.decisions import _decision_row
from runtime.writer import PendingWrite, ThreadedWriter, decision_writer, insert_decisions
from tenancy.principal import ApiKeyPrincipal
from tests.factories import ApprovalFactory, TeamFactory

pytestmark = pytest.mark.django_db(transaction=True)


def row(team_id: uuid.UUID, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "team_id": team_id,
        "tool_name": "send_sms",
        "arguments": {"to": "+1555", "nested": {"ok": [1, 2, "ü"]}},
        "context": {"session_id": "s", "custom": {"env": "prod"}},
        "decision": "allow",
        "rule_id": "",
        "rule_name": "",
        "reason": "tab\there, newline\nthere, backslash \\ and quote ' and \"",
        "severity": "",
        "mode": "deterministic",
        "source": "server",
        "latency_ms": 0.25,
        "rule_set_version": 3,
        "approval_id": None,
        "enforcement": "strict",
        "api_key_id": uuid.uuid4(),
        "created_at": timezone.now(),
        "rules_hash": "",
        "metadata": None,
    }
    values.update(overrides)
    for column, value in context_columns(values["context"]).items():
        values.setdefault(column, value)
    return values


CHAIN_COLUMNS = {"sequence", "record", "prev_hash", "hash"}  # the writer fills these in the commit


def test_decision_row__has_exactly_the_models_columns_but_the_chain():
    principal = ApiKeyPrincipal(uuid.uuid4(), "vk_x", uuid.uuid4(), "t", uuid.uuid4(), frozenset())
    built = _decision_row(
        principal=principal,
        tool_name="t",
        arguments={},
        context={},
        decision="allow",
        reason="",
        mode="deterministic",
        source="server",
        latency_ms=0.0,
        now=timezone.now(),
    )
    assert set(built) == {f.attname for f in DecisionRecord._meta.concrete_fields} - CHAIN_COLUMNS
    assert set(row(uuid.uuid4())) == set(built)


async def _write_all(
    rows: list[dict[str, object]], approvals: dict[int, Approval]
) -> list[BaseException | None]:
    writer = decision_writer()
    results = await asyncio.gather(
        *(writer.write(r, approvals.get(i)) for i, r in enumerate(rows)), return_exceptions=True
    )
    return [r if isinstance(r, BaseException) else None for r in results]


def test_writer__concurrent_waiters__each_row_committed_before_its_waiter_hears_back():
    # Given 50 decisions written at once through the writer the gateway uses on this database
    team = TeamFactory()
    rows = [row(team.id, tool_name=f"tool-{i}") for i in range(50)]
    # When every waiter has heard back
    outcomes = asyncio.run(_write_all(rows, {}))
    # Then every row is there exactly as written (JSON and awkward text survive the trip)
    assert outcomes == [None] * 50
    stored = {r.id: r for r in DecisionRecord.objects.filter(team=team)}
    assert set(stored) == {r["id"] for r in rows}
    sample = stored[rows[0]["id"]]
    assert (sample.arguments, sample.context, sample.reason) == (
        rows[0]["arguments"],
        rows[0]["context"],
        rows[0]["reason"],
    )
    assert sample.rule_set_version == 3


def test_writer__decision_and_its_approval__are_written_together():
    team = TeamFactory()
    approval = ApprovalFactory.build(team=team, id=uuid.uuid4(), approver_groups=["compliance"])
    decision = row(team.id, decision="require_approval", approval_id=approval.id)
    assert asyncio.run(_write_all([decision], {0: approval})) == [None]
    stored = Approval.objects.get()
    assert stored.id == approval.id
    assert (stored.status, stored.approver_groups) == (Approval.Status.PENDING, ["compliance"])
    assert DecisionRecord.objects.get().approval_id == approval.id


def test_writer__one_bad_row_in_a_batch__fails_alone():
    # Given a batch where one row cannot be stored (its team does not exist) between good ones
    team = TeamFactory()
    rows = [row(team.id), row(uuid.uuid4()), row(team.id)]
    # When they are written together
    outcomes = asyncio.run(_write_all(rows, {}))
    # Then only that row's waiter hears of a failure; the others are recorded
    assert outcomes[0] is None and outcomes[2] is None
    assert outcomes[1] is not None
    assert DecisionRecord.objects.filter(team=team).count() == 2


def test_insert__a_bad_row__writes_nothing_of_its_batch_including_approvals():
    team = TeamFactory()
    approval = ApprovalFactory.build(team=team, id=uuid.uuid4())
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError on SQLite and PostgreSQL alike
        insert_decisions([row(team.id, approval_id=approval.id), row(uuid.uuid4())], [approval])
    connection.close()
    assert DecisionRecord.objects.count() == 0
    assert Approval.objects.count() == 0


def test_threaded_writer__a_failed_batch_then_a_later_write():
    team = TeamFactory()
    writer = ThreadedWriter(max_batch=8)

    async def scenario() -> tuple[list[bool], bool]:
        loop = asyncio.get_running_loop()
        batch = [
            PendingWrite(r, None, loop.create_future(), loop)
            for r in (row(team.id), row(uuid.uuid4()), row(team.id))
        ]
        await asyncio.to_thread(writer._flush, batch)
        outcomes = await asyncio.gather(*(item.done for item in batch), return_exceptions=True)
        later = await asyncio.gather(writer.write(row(team.id)), return_exceptions=True)
        return [o is None for o in outcomes], later == [None]

    assert asyncio.run(scenario()) == ([True, False, True], True)
    assert DecisionRecord.objects.filter(team=team).count() == 3
