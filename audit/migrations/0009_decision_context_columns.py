"""Model, environment, agent and session as columns of decision records (the explorer filters on
them), filled for existing rows from their context, and the explorer's indexes.

Not atomic, on purpose: the backfill commits batch by batch (a 10M-row table is not rewritten in
one transaction holding its locks; each batch lifts the append-only trigger inside its own
transaction, see _append_only_lifted), and on PostgreSQL the indexes are built with
``CREATE INDEX CONCURRENTLY`` so the decision writer keeps inserting while they build. Adding the
columns with a constant default is a catalogue change on PostgreSQL 11+ (no rewrite). A failed
concurrent build leaves an INVALID index of that name: drop it and migrate again (``IF NOT
EXISTS`` would keep the invalid one, so it is not used). On SQLite the same operations run as
ordinary ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import migrations, models, transaction
from django.db.models import Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce, Left, NullIf

BATCH = 10_000
APPEND_ONLY_TRIGGER = "audit_decisionrecord_append_only"
COLUMNS = ("model", "environment", "agent_id", "session_id")  # audit.models.CONTEXT_COLUMNS (same keys)


def _from_context(key: str) -> Any:
    # audit.models.context_column_value in SQL, for string values (what the SDK sends); the
    # rare non-string value is kept as the database prints its JSON.
    top = NullIf(KeyTextTransform(key, "context"), Value(""), output_field=models.TextField())
    custom = NullIf(
        KeyTextTransform(key, KeyTransform("custom", "context")), Value(""), output_field=models.TextField()
    )
    return Left(Coalesce(top, custom, Value(""), output_field=models.TextField()), 200)


def backfill(apps: Any, schema_editor: Any) -> None:
    """Fill the new columns of existing rows, per team in sequence ranges of ``BATCH``."""
    DecisionRecord = apps.get_model("audit", "DecisionRecord")
    db = schema_editor.connection.alias
    rows = DecisionRecord.objects.using(db)
    team_ids = rows.order_by().values_list("team_id", flat=True).distinct()
    for team_id in list(team_ids):
        bounds = rows.filter(team_id=team_id).aggregate(
            low=models.Min("sequence"), high=models.Max("sequence")
        )
        low, high = bounds["low"], bounds["high"]
        if low is None:
            continue
        start = low - 1
        while start < high:
            with transaction.atomic(using=db), _append_only_lifted(schema_editor):
                rows.filter(team_id=team_id, sequence__gt=start, sequence__lte=start + BATCH).exclude(
                    context={}
                ).update(**{column: _from_context(column) for column in COLUMNS})
            start += BATCH


@contextmanager
def _append_only_lifted(schema_editor: Any) -> Iterator[None]:
    """On PostgreSQL, the append-only trigger (migration 0003) off for one batch's transaction:
    ALTER TABLE is transactional and holds its lock to the commit, so no other session ever
    sees the table without the trigger (the decision writer waits for the batch, ~0.1 s), and
    only these derived columns are written. SQLite has no such trigger."""
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:
        schema_editor.execute(f"ALTER TABLE audit_decisionrecord DISABLE TRIGGER {APPEND_ONLY_TRIGGER}")
    yield
    if postgresql:
        schema_editor.execute(f"ALTER TABLE audit_decisionrecord ENABLE TRIGGER {APPEND_ONLY_TRIGGER}")


def _noop(apps: Any, schema_editor: Any) -> None:
    return None


def _explorer_index(column: str | None, name: str) -> models.Index:
    fields = ["team", column, "sequence"] if column else ["team", "sequence"]
    include = [] if column == "decision" else ["decision"]
    return models.Index(fields=fields, name=name, include=include)


INDEXES = [
    _explorer_index(None, "decision_x_seq"),
    _explorer_index("tool_name", "decision_x_tool_seq"),
    _explorer_index("decision", "decision_x_outcome_seq"),
    _explorer_index("rule_id", "decision_x_rule_seq"),
    _explorer_index("model", "decision_x_model_seq"),
    _explorer_index("environment", "decision_x_env_seq"),
    _explorer_index("agent_id", "decision_x_agent_seq"),
    _explorer_index("session_id", "decision_x_session_seq"),
    _explorer_index("source", "decision_x_source_seq"),
]


def create_indexes(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("audit", "DecisionRecord")
    for index in INDEXES:
        if schema_editor.connection.vendor == "postgresql":
            # Outside a transaction (atomic = False): CONCURRENTLY refuses to run inside one.
            schema_editor.execute(index.create_sql(model, schema_editor, concurrently=True))
        else:
            schema_editor.add_index(model, index)


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("audit", "DecisionRecord")
    for index in INDEXES:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(index.remove_sql(model, schema_editor, concurrently=True))
        else:
            schema_editor.remove_index(model, index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0008_auditevent_kind_team_changed"),
    ]

    operations = [
        *(
            migrations.AddField(
                model_name="decisionrecord",
                name=column,
                field=models.CharField(blank=True, default="", max_length=200),
            )
            for column in COLUMNS
        ),
        migrations.RunPython(backfill, _noop, elidable=True),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(model_name="decisionrecord", index=index) for index in INDEXES
            ],
            database_operations=[migrations.RunPython(create_indexes, drop_indexes)],
        ),
    ]
