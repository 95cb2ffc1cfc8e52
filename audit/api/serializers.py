from __future__ import annotations

from typing import Any

from rest_framework import serializers

from audit.models import DecisionRecord
from audit.selectors import DecisionFilters
from common.api import iso


class DecisionQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=50)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    projectId = serializers.UUIDField(required=False)
    toolName = serializers.CharField(required=False, max_length=200)
    decision = serializers.ChoiceField(required=False, choices=DecisionRecord.Outcome.values)
    startDate = serializers.DateTimeField(required=False)
    endDate = serializers.DateTimeField(required=False)

    def filters(self) -> DecisionFilters:
        data = self.validated_data
        return DecisionFilters(
            tool_name=data.get("toolName"),
            decision=data.get("decision"),
            start=data.get("startDate"),
            end=data.get("endDate"),
        )


class DecisionExportQuerySerializer(DecisionQuerySerializer):
    """The list's filters (no paging: an export holds every match) and the file format."""

    # DRF's way to drop an inherited field, which the stubs do not model.
    limit = None  # type: ignore[assignment]
    offset = None  # type: ignore[assignment]
    format = serializers.ChoiceField(required=False, choices=["json", "csv"], default="json")


def decision_output(record: DecisionRecord) -> dict[str, Any]:
    return {
        "_id": str(record.id),
        "id": str(record.id),
        "projectId": str(record.team_id),
        "toolName": record.tool_name,
        "arguments": record.arguments,
        "context": record.context,
        "decision": record.decision,
        "mode": record.mode,
        # strict, or log/shadow: the caller was answered allow, ``decision`` is what strict would do
        "enforcement": record.enforcement,
        "reason": record.reason or None,
        "ruleId": record.rule_id or None,
        "ruleName": record.rule_name or None,
        "severity": record.severity or None,
        "source": record.source,
        "latencyMs": record.latency_ms,
        "ruleSetVersion": record.rule_set_version,
        "approvalId": str(record.approval_id) if record.approval_id else None,
        "createdAt": iso(record.created_at),
    }
