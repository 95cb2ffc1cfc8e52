"""Migration audit/0009 on a database that already holds decisions: the new columns are filled
from each row's context (PostgreSQL refuses UPDATE of chained rows, so the backfill must lift
its append-only trigger for its own batches only), and the trigger is back afterwards."""

from __future__ import annotations

import uuid

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit.models import DecisionRecord
from tests.factories import TeamFactory

BEFORE = ("audit", "0008_auditevent_kind_team_changed")
AFTER = ("audit", "0009_decision_context_columns")


def _migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_migration_0009__existing_decisions__columns_filled_from_their_context():
    team = TeamFactory()
    old_apps = _migrate(BEFORE)
    try:
        # Given decisions stored before the columns existed: on top, under custom, neither
        OldDecision = old_apps.get_model("audit", "DecisionRecord")
        contexts = [
            {"agent_id": "agent-7", "session_id": "s-1", "custom": {"model": "gpt-5", "environment": "prod"}},
            {"model": "claude", "custom": {"model": "ignored", "agent_id": "from-custom"}},
            {},
        ]
        ids = []
        for n, context in enumerate(contexts, start=1):
            row = OldDecision.objects.create(
                id=uuid.uuid4(),
                team_id=team.id,
                tool_name="t",
                arguments={},
                context=context,
                decision="allow",
                mode="deterministic",
                source="server",
                latency_ms=0.0,
                created_at=timezone.now(),
                sequence=n,
                record="{}",
                prev_hash="",
                hash=f"{n:064x}",
            )
            ids.append(row.id)
        # When the migration runs
        _migrate(AFTER)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    # Then each row says what its context said, and "" where it said nothing
    read = {r.id: r for r in DecisionRecord.objects.filter(id__in=ids)}
    assert [(read[i].model, read[i].environment, read[i].agent_id, read[i].session_id) for i in ids] == [
        ("gpt-5", "prod", "agent-7", "s-1"),
        ("claude", "", "from-custom", ""),
        ("", "", "", ""),
    ]
    # And on PostgreSQL the records are append-only again
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            DecisionRecord.objects.filter(id=ids[0]).update(model="changed")
