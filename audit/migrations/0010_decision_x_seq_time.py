"""The explorer's unfiltered index also carries ``created_at`` (``decision_x_seq`` becomes
``decision_x_seq_time``): the counts of a time range, bracketed by sequence, read the time from
the index instead of the table (benchmarks/explorer_queries.py: a day's counts on 10M rows
1.5 s -> under 100 ms).

As 0009: not atomic, and on PostgreSQL the new index is built ``CONCURRENTLY`` before the old one
is dropped, so the writer keeps inserting and the table is never without one. A failed build
leaves an INVALID ``decision_x_seq_time``: drop it and migrate again.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

OLD = models.Index(fields=["team", "sequence"], name="decision_x_seq", include=["decision"])
NEW = models.Index(
    fields=["team", "sequence"], name="decision_x_seq_time", include=["decision", "created_at"]
)


def _add(schema_editor: Any, model: Any, index: models.Index) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(index.create_sql(model, schema_editor, concurrently=True))
    else:
        schema_editor.add_index(model, index)


def _remove(schema_editor: Any, model: Any, index: models.Index) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(index.remove_sql(model, schema_editor, concurrently=True))
    else:
        schema_editor.remove_index(model, index)


def forwards(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("audit", "DecisionRecord")
    _add(schema_editor, model, NEW)
    _remove(schema_editor, model, OLD)


def backwards(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("audit", "DecisionRecord")
    _add(schema_editor, model, OLD)
    _remove(schema_editor, model, NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0009_decision_context_columns"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="decisionrecord", name="decision_x_seq"),
                migrations.AddIndex(model_name="decisionrecord", index=NEW),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
