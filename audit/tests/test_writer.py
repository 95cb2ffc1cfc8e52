"""The group-commit decision writer: durable before the waiter hears back, all or nothing per batch."""

from __future__ import annotations

import uuid
from concurrent.futures import Future, wait

import pytest
from django.db import connection
from django.utils import timezone

from approvals.models import Approval
from audit.models import DECISION_COLUMNS, DecisionRecord
from audit.writer import DecisionWriter, PendingWrite, insert_decisions
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
        "reason": "tab\there, newline\nthere, backslash \\ and quote '",
        "severity": "",
        "mode": "deterministic",
        "source": "server",
        "latency_ms": 0.25,
        "rule_set_version": 3,
        "approval_id": None,
        "api_key_id": uuid.uuid4(),
        "created_at": timezone.now(),
    }
    values.update(overrides)
    return values


def test_decision_columns__match_the_model():
    model_columns = {f.attname for f in DecisionRecord._meta.concrete_fields}
    assert set(DECISION_COLUMNS) == model_columns


def test_writer__rows_from_many_waiters__are_committed_before_each_hears_back():
    # Given a writer and 50 decisions submitted at once
    team = TeamFactory()
    writer = DecisionWriter(max_batch=16)
    rows = [row(team.id, tool_name=f"tool-{i}") for i in range(50)]
    futures = [writer.submit(r) for r in rows]
    # When every waiter has heard back
    done, _ = wait(futures, timeout=30)
    # Then every row is there, exactly as submitted (JSON and awkward text survive COPY too)
    assert len(done) == 50 and all(f.exception() is None for f in done)
    stored = {r.id: r for r in DecisionRecord.objects.filter(team=team)}
    assert set(stored) == {r["id"] for r in rows}
    sample = stored[rows[0]["id"]]
    assert sample.arguments == rows[0]["arguments"]
    assert sample.context == rows[0]["context"]
    assert sample.reason == rows[0]["reason"]
    assert sample.rule_set_version == 3


def test_insert__a_bad_row__rolls_back_the_whole_batch_including_approvals():
    # Given a batch whose second row breaks a constraint (unknown team), with an approval
    team = TeamFactory()
    approval = ApprovalFactory.build(team=team, id=uuid.uuid4())
    rows = [row(team.id, approval_id=approval.id), row(uuid.uuid4())]
    # When it is inserted
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError on SQLite and PostgreSQL alike
        insert_decisions(rows, [approval])
    connection.close()
    # Then nothing of it was written: no half-recorded decision, no orphan approval
    assert DecisionRecord.objects.count() == 0
    assert Approval.objects.count() == 0


def test_writer__one_bad_row_in_a_batch__fails_alone_and_the_writer_survives():
    # Given one batch holding a row that cannot be stored (unknown team) between two good ones
    team = TeamFactory()
    writer = DecisionWriter(max_batch=8)
    batch = [PendingWrite(r, None, Future()) for r in (row(team.id), row(uuid.uuid4()), row(team.id))]
    # When the writer flushes it
    writer._flush(batch)
    # Then only the bad row's waiter hears of a failure, and the good rows are recorded
    outcomes = [item.done.exception() for item in batch]
    assert outcomes[0] is None and outcomes[2] is None
    assert outcomes[1] is not None
    assert DecisionRecord.objects.filter(team=team).count() == 2
    # and the writer keeps working
    later = writer.submit(row(team.id))
    wait([later], timeout=30)
    assert later.exception() is None
