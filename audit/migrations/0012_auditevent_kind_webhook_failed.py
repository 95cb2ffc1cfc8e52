from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0011_decision_x_tool_outcome_seq"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("approval.action", "Approval action"),
                    ("rule_set.published", "Rule set published"),
                    ("tool_policy.changed", "Tool policy changed"),
                    ("team.changed", "Team changed"),
                    ("webhook.failed", "Webhook endpoint disabled"),
                ],
                max_length=32,
            ),
        ),
    ]
