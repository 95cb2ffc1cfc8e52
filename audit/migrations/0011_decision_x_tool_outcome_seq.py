"""The explorer's tool + outcome filter gets its own index, (team, tool_name, decision, sequence):
its counts read the newest 20,000 matches straight from the index instead of walking
``decision_x_tool_seq`` past every other outcome of the tool (10M benchmark, a tool of ~30 % with
deny: ~100 ms at the 20,000 limit, 22 ms with this index; benchmarks/explorer_queries.py).

As 0009 and 0010: not atomic, and on PostgreSQL built ``CONCURRENTLY`` so the decision writer keeps
inserting while it builds. A failed build leaves an INVALID ``decision_x_tool_outcome_seq``: drop it
and migrate again.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

INDEX = models.Index(fields=["team", "tool_name", "decision", "sequence"], name="decision_x_tool_outcome_seq")


def forwards(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("audit", "DecisionRecord")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INDEX.create_sql(model, schema_editor, concurrently=True))
    else:
        schema_editor.add_index(model, INDEX)


def backwards(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("audit", "DecisionRecord")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INDEX.remove_sql(model, schema_editor, concurrently=True))
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0010_decision_x_seq_time"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="decisionrecord", index=INDEX)],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
