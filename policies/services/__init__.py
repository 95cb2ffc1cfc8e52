"""Writes for policies, one module per aggregate: ``rule_sets`` (versions: create, publish,
roll back), ``tools`` (registered tool signatures), ``tool_policies`` (per-tool policies) and
``drafts`` (proposed rules, approved into a published version or rejected). Callers import
from here. Each takes the ``tenancy.actor.Actor`` who acts and applies the rule of
``policies.permissions`` that guards it, whoever calls it."""

from policies.services.drafts import policy_draft_approve, policy_draft_create, policy_draft_reject
from policies.services.rule_sets import (
    FixturesFailed,
    rule_set_source_check,
    rule_set_version_create,
    rule_set_version_publish,
)
from policies.services.tool_policies import (
    tool_policy_create,
    tool_policy_delete,
    tool_policy_set_active,
    tool_policy_update,
)
from policies.services.tools import tools_register

__all__ = [
    "FixturesFailed",
    "policy_draft_approve",
    "policy_draft_create",
    "policy_draft_reject",
    "rule_set_source_check",
    "rule_set_version_create",
    "rule_set_version_publish",
    "tool_policy_create",
    "tool_policy_delete",
    "tool_policy_set_active",
    "tool_policy_update",
    "tools_register",
]
