"""The per-team decision chain (issue 5): chain columns, heads, audit events, checkpoints.

Existing decisions are chained in the order they were made (time, then id), so an upgraded
database verifies like a new one. On PostgreSQL a trigger then refuses UPDATE and DELETE of
chained rows (TRUNCATE, which test teardown and a deliberate archival use, is not a row event).
"""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

REFUSE_CHANGES = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_decisionrecord_append_only BEFORE UPDATE OR DELETE ON audit_decisionrecord
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_auditevent_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
"""
ALLOW_CHANGES = """
DROP TRIGGER IF EXISTS audit_decisionrecord_append_only ON audit_decisionrecord;
DROP TRIGGER IF EXISTS audit_auditevent_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_refuse_change();
"""


def chain_existing_decisions(apps, schema_editor):
    from audit.chain import Head, link_rows

    DecisionRecord = apps.get_model("audit", "DecisionRecord")
    ChainHead = apps.get_model("audit", "ChainHead")
    fields = [f.attname for f in DecisionRecord._meta.concrete_fields]
    for team_id in DecisionRecord.objects.values_list("team_id", flat=True).distinct():
        head = {team_id: Head(0, "")}
        for record in DecisionRecord.objects.filter(team_id=team_id).order_by("created_at", "id").iterator():
            row = {name: getattr(record, name) for name in fields}
            head = {team_id: link_rows([row], head).get(team_id, head[team_id])}
            DecisionRecord.objects.filter(pk=record.pk).update(
                sequence=row["sequence"], record=row["record"], prev_hash=row["prev_hash"], hash=row["hash"]
            )
        ChainHead.objects.create(
            team_id=team_id, stream="decisions", sequence=head[team_id].sequence, hash=head[team_id].hash
        )


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REFUSE_CHANGES, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ALLOW_CHANGES, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_decision_enforcement_mode"),
        ("tenancy", "0003_team_admins_may_approve"),
    ]

    operations = [
        migrations.AddField("decisionrecord", "sequence", models.BigIntegerField(null=True)),
        migrations.AddField("decisionrecord", "record", models.TextField(default="")),
        migrations.AddField("decisionrecord", "prev_hash", models.CharField(blank=True, default="", max_length=64)),
        migrations.AddField("decisionrecord", "hash", models.CharField(default="", max_length=64)),
        migrations.CreateModel(
            name="ChainHead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "stream",
                    models.CharField(
                        choices=[("decisions", "Decisions"), ("events", "Approval actions and policy publishes")],
                        max_length=16,
                    ),
                ),
                ("sequence", models.BigIntegerField(default=0)),
                ("hash", models.CharField(blank=True, max_length=64)),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenancy.team"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("team", "stream"), name="chain_head_one_per_stream")
                ]
            },
        ),
        migrations.RunPython(chain_existing_decisions, migrations.RunPython.noop),
        migrations.AlterField("decisionrecord", "sequence", models.BigIntegerField()),
        migrations.AlterField("decisionrecord", "record", models.TextField()),
        migrations.AlterField("decisionrecord", "prev_hash", models.CharField(blank=True, max_length=64)),
        migrations.AlterField("decisionrecord", "hash", models.CharField(max_length=64)),
        migrations.AddConstraint(
            "decisionrecord",
            models.UniqueConstraint(fields=("team", "sequence"), name="decision_chain_sequence"),
        ),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("approval.action", "Approval action"),
                            ("rule_set.published", "Rule set published"),
                        ],
                        max_length=32,
                    ),
                ),
                ("actor_name", models.CharField(max_length=200)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("sequence", models.BigIntegerField()),
                ("record", models.TextField()),
                ("prev_hash", models.CharField(blank=True, max_length=64)),
                ("hash", models.CharField(max_length=64)),
                (
                    "team",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tenancy.team",
                    ),
                ),
            ],
            options={
                "ordering": ["team", "sequence"],
                "constraints": [
                    models.UniqueConstraint(fields=("team", "sequence"), name="audit_event_chain_sequence")
                ],
            },
        ),
        migrations.CreateModel(
            name="Checkpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "stream",
                    models.CharField(
                        choices=[("decisions", "Decisions"), ("events", "Approval actions and policy publishes")],
                        max_length=16,
                    ),
                ),
                ("sequence", models.BigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("signed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("payload", models.TextField()),
                ("signature", models.CharField(max_length=128)),
                ("public_key", models.CharField(max_length=64)),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tenancy.team"
                    ),
                ),
            ],
            options={
                "ordering": ["team", "stream", "sequence"],
                "indexes": [models.Index(fields=["team", "stream", "-sequence"], name="checkpoint_latest")],
            },
        ),
        migrations.CreateModel(
            name="Verification",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "stream",
                    models.CharField(
                        choices=[("decisions", "Decisions"), ("events", "Approval actions and policy publishes")],
                        max_length=16,
                    ),
                ),
                ("ran_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("ok", models.BooleanField()),
                ("count", models.BigIntegerField()),
                ("head_sequence", models.BigIntegerField(blank=True, null=True)),
                ("head_hash", models.CharField(blank=True, max_length=64)),
                ("broken_at", models.BigIntegerField(blank=True, null=True)),
                ("problem", models.TextField(blank=True)),
                ("seconds", models.FloatField()),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenancy.team"
                    ),
                ),
            ],
            options={
                "ordering": ["-ran_at"],
                "indexes": [models.Index(fields=["team", "stream", "-ran_at"], name="verification_latest")],
            },
        ),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
