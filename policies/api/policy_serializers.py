"""Input and output shapes of per-tool policies and policy drafts (field names are the SDK's:
``veto.admin.Policy`` and ``veto.admin.PolicyDraft``).

A policy body itself is checked by ``policies.engine.constraints.normalize_tool_policy``,
which names every problem's path; the serializers here cover queries and drafts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework import serializers

from common.api import iso
from policies.engine.constraints import TOOL_NAME_MAX
from policies.engine.evaluator import CompiledRule
from policies.models import PolicyDraft, ToolPolicy

_BOOLEAN_WORDS = {"true": True, "false": False}


class PolicyListQuerySerializer(serializers.Serializer):
    projectId = serializers.UUIDField(required=False)
    toolName = serializers.CharField(required=False, max_length=TOOL_NAME_MAX)
    mode = serializers.ChoiceField(required=False, choices=ToolPolicy.Mode.values)
    # A choice, not a BooleanField: DRF reads a BooleanField missing from a query string as false.
    isActive = serializers.ChoiceField(required=False, choices=list(_BOOLEAN_WORDS))

    def filters(self) -> dict[str, Any]:
        data = self.validated_data
        return {
            "tool_name": data.get("toolName"),
            "mode": data.get("mode"),
            "is_active": _BOOLEAN_WORDS[data["isActive"]] if "isActive" in data else None,
        }


class PolicyExportQuerySerializer(PolicyListQuerySerializer):
    format = serializers.ChoiceField(required=False, choices=["json", "yaml"], default="json")


class PolicyDraftListQuerySerializer(serializers.Serializer):
    projectId = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(required=False, choices=PolicyDraft.Status.values)
    createdByAgentId = serializers.CharField(required=False, max_length=200)


class PolicyDraftCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=10_000)
    # How many rules a rule set may hold is the loader's published limit (RULE_SET_MAX_RULES).
    rules = serializers.ListField(child=serializers.JSONField(), allow_empty=False)
    projectId = serializers.UUIDField(required=False, allow_null=True)
    status = serializers.ChoiceField(
        required=False, allow_null=True, choices=[s.value for s in PolicyDraft.OPEN_STATUSES]
    )
    createdByAgentId = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=200
    )


class PolicyDraftRejectInputSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=5000)


def rate_limits_output(rules: Iterable[CompiledRule]) -> list[dict[str, Any]] | None:
    """``rateLimits`` of a served policy: the rate limits that govern the tool's calls, which are
    those of the active rule set's rules that can apply to it (``CompiledRuleSet.rules_for``:
    a tool policy stores none of its own), or None when there are none.

    The SDK only asks whether it is null (``PolicyCache``: ``has_rate_limits``); non-null makes it
    send the tool's calls to the server rather than decide them locally, which a rate limit
    needs (the counters are the server's). Such a tool has a rule, so ``sessionConstraints``
    already says the same; this says which limits, instead of a null that claimed none."""
    limits = [
        {
            "ruleId": rule.id,
            "scope": limit.scope,
            "windowSeconds": limit.window_seconds,
            "maxCalls": limit.max_calls,
        }
        for rule in rules
        for limit in rule.rate_limits
    ]
    return limits or None


def policy_output(
    policy: ToolPolicy,
    *,
    session_constraints: dict[str, Any] | None,
    rate_limits: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """One policy as ``VetoAdmin`` and the SDK's PolicyCache read it. ``session_constraints``
    is what the server tells the SDK (see ``selectors.tool_policy_server_marker``), merged over
    the policy's own session constraints; ``rateLimits`` are the policy's own limits, then the
    rule set's limits on the tool (``rate_limits_output``, each with its ``ruleId``). Either
    being non-null sends the tool's calls to the server, which keeps the counts. Sending the
    result back as it came changes nothing: the markers and the ``ruleId`` entries are ignored."""
    own_limits = list(policy.rate_limits or [])
    served_session = {**(policy.session_constraints or {}), **(session_constraints or {})}
    return {
        "_id": str(policy.id),
        "id": str(policy.id),
        "projectId": str(policy.team_id),
        "toolName": policy.tool_name,
        "mode": policy.mode,
        "version": policy.version,
        "isActive": policy.is_active,
        "constraints": policy.constraints,
        "outputRules": policy.output_rules,
        "llmConfig": policy.llm_config,
        "sessionConstraints": served_session or None,
        "rateLimits": (own_limits + (rate_limits or [])) or None,
        "updatedBy": policy.updated_by_name or None,
        "createdAt": iso(policy.created_at),
        "updatedAt": iso(policy.updated_at),
    }


def policy_export_entry(policy: ToolPolicy) -> dict[str, Any]:
    """A policy as exported: exactly what ``POST /v1/policies`` takes back (``version`` and
    ``isActive`` are kept for the reader and ignored on the way in)."""
    return {
        "toolName": policy.tool_name,
        "mode": policy.mode,
        "version": policy.version,
        "isActive": policy.is_active,
        "constraints": policy.constraints,
        "outputRules": policy.output_rules,
        "llmConfig": policy.llm_config,
        "sessionConstraints": policy.session_constraints,
        "rateLimits": policy.rate_limits,
    }


def policy_draft_output(draft: PolicyDraft) -> dict[str, Any]:
    return {
        "_id": str(draft.id),
        "id": str(draft.id),
        "projectId": str(draft.team_id),
        "name": draft.name,
        "description": draft.description or None,
        "status": draft.status,
        "createdByAgentId": draft.created_by_agent_id or None,
        "createdBy": draft.created_by_name or None,
        "rules": draft.rules,
        "baseVersion": draft.base_version_number,
        "reviewRequestedBy": draft.review_requested_by_name or None,
        "reviewRequestedAt": iso(draft.review_requested_at),
        "decidedBy": draft.decided_by_name or None,
        "decidedAt": iso(draft.decided_at),
        "rejectionReason": draft.rejection_reason or None,
        "ruleSetVersion": draft.result_version.number if draft.result_version is not None else None,
        "createdAt": iso(draft.created_at),
        "updatedAt": iso(draft.updated_at),
    }
