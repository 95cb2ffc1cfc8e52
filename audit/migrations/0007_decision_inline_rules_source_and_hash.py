"""Decisions made with rules sent inline (API mode) are recorded as what they are: source
``inline_rules`` (wider column) and the rules' SHA-256 in ``rules_hash``."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_events_stream_tool_policy_changes")]

    operations = [
        migrations.AlterField(
            model_name="decisionrecord",
            name="source",
            field=models.CharField(
                choices=[
                    ("server", "Server (validate, the team's rules)"),
                    ("client", "Client (SDK local decision)"),
                    ("inline_rules", "Server (validate, rules sent inline)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="decisionrecord",
            name="rules_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
