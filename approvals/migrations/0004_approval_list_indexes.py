"""Indexes for the approvals' lists at 100,000 pending (benchmarks/scale_10m.py, 10M decisions and
100k pending + 100k decided approvals; plans in benchmarks/results/scale-10m-*-plans.txt):

- ``approval_team_time`` (team, -created_at): ``GET /v1/approvals`` without a status, newest first,
  read 100 rows from the index instead of a sequential scan and a sort of the table (~250 ms);
- ``approval_team_tool_time`` (team, tool_name, -created_at): the same with ``toolName`` (with or
  without a status: the pending ones are the newest of a tool);
- ``approval_team_resolved`` (team, -resolved_at) of the decided ones: the history page's newest
  hundred (~490 ms before);
- ``approval_pending_team`` (team, expires_at) of the pending ones: the home page's per-team counts
  and the nav badge's read the pending rows still before their deadline from it.

As audit 0011: not atomic, and on PostgreSQL built ``CONCURRENTLY``, so validate keeps raising
approvals while they build. A failed build leaves an INVALID index: drop it and migrate again.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.db.models import Q

INDEXES = (
    models.Index(fields=["team", "-created_at"], name="approval_team_time"),
    models.Index(fields=["team", "tool_name", "-created_at"], name="approval_team_tool_time"),
    models.Index(
        fields=["team", "-resolved_at"], condition=~Q(status="pending"), name="approval_team_resolved"
    ),
    models.Index(fields=["team", "expires_at"], condition=Q(status="pending"), name="approval_pending_team"),
)


def forwards(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("approvals", "Approval")
    for index in INDEXES:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(index.create_sql(model, schema_editor, concurrently=True))
        else:
            schema_editor.add_index(model, index)


def backwards(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("approvals", "Approval")
    for index in INDEXES:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(index.remove_sql(model, schema_editor, concurrently=True))
        else:
            schema_editor.remove_index(model, index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("approvals", "0003_approval_event_channel_slack"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="approval", index=index) for index in INDEXES],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
