"""Writes for per-tool policies: create, update, (de)activate, delete; each chained in the team's
governance trail, each in effect at once (validate enforces it). Who may is
``policies.permissions.ensure_may_change_tool_policies`` (and ``ensure_no_loosening``), checked
here before the body is read."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.trail import audit_event_append
from common.errors import Conflict, NotFound
from policies.engine import RuleSetError
from policies.engine.constraints import normalize_tool_policy
from policies.engine.errors import Problem
from policies.models import ToolPolicy
from policies.permissions import (
    LOOSEN_TOOL_POLICY_SCOPE,
    ensure_may_change_tool_policies,
    ensure_no_loosening,
)
from policies.services._common import invalid as _invalid
from tenancy.actor import Actor

logger = logging.getLogger(__name__)


def _tool_policy_state(policy: ToolPolicy) -> dict[str, Any]:
    return {
        "is_active": policy.is_active,
        "mode": policy.mode,
        "constraints": policy.constraints,
        "output_rules": policy.output_rules,
        "llm_config": policy.llm_config,
        "session_constraints": policy.session_constraints,
        "rate_limits": policy.rate_limits,
    }


def _tool_policy_changed(
    *, policy: ToolPolicy, change: str, actor_name: str, remote_addr: str | None
) -> None:
    """Inside the change's transaction: chain it in the team's governance trail (who, what, from
    where; created and updated entries hold the policy as it now is). The entry announces it once
    committed (``tool_policy.changed``): every process drops its cached policies (this one at the
    commit, the others on the event: policies.selectors.forget_cached_policies_of_event)."""
    details: dict[str, Any] = {
        "tool": policy.tool_name,
        "change": change,
        "version": policy.version,
        "is_active": policy.is_active,
    }
    if change in ("created", "updated"):
        details["policy"] = {
            "mode": policy.mode,
            "constraints": policy.constraints,
            "output_rules": policy.output_rules,
            "llm_config": policy.llm_config,
            "session_constraints": policy.session_constraints,
            "rate_limits": policy.rate_limits,
        }
    audit_event_append(
        team_id=policy.team_id,
        kind=AuditEvent.Kind.TOOL_POLICY_CHANGED,
        actor_name=actor_name or "unknown",
        details=details,
        remote_addr=remote_addr,
    )


def tool_policy_create(*, team_id: uuid.UUID, data: Any, actor: Actor | None = None) -> ToolPolicy:
    """Create a tool's policy from a request body in the SDK's shape (``CreatePolicyInput``);
    it is active at once, version 1. Every problem of the body is reported with its path; a
    second policy for the same tool is a 409 (the unique constraint decides races)."""
    actor = ensure_may_change_tool_policies(
        actor=actor, team_id=team_id, tool_name=data.get("toolName") if isinstance(data, Mapping) else None
    )
    try:
        fields = normalize_tool_policy(data, creating=True)
    except RuleSetError as exc:
        raise _invalid(exc, what="policy", code="invalid_policy") from exc
    now = timezone.now()
    try:
        with transaction.atomic():
            policy = ToolPolicy.objects.create(
                team_id=team_id,
                updated_by_name=actor.name,
                created_at=now,
                updated_at=now,
                **fields,
            )
            _tool_policy_changed(
                policy=policy, change="created", actor_name=actor.name, remote_addr=actor.remote_addr
            )
    except IntegrityError as exc:
        raise Conflict(
            f"a policy for tool {fields['tool_name']!r} already exists; update it with PUT",
            code="policy_exists",
        ) from exc
    logger.info("tool_policy.created team=%s tool=%s", team_id, policy.tool_name)
    return policy


def tool_policy_update(*, policy: ToolPolicy, data: Any, actor: Actor | None = None) -> ToolPolicy:
    """Change the fields the body sets (``UpdatePolicyInput``; the others stay) and bump the
    version, under the row's lock so concurrent updates each get their own version. A caller
    that may not loosen (``permissions.may_loosen_tool_policies``) is refused a change that lets
    more calls through (``LooseningNotAllowed``), and nothing changes."""
    actor = ensure_may_change_tool_policies(actor=actor, team_id=policy.team_id, tool_name=policy.tool_name)
    try:
        fields = normalize_tool_policy(data, creating=False, tool_name=policy.tool_name)
    except RuleSetError as exc:
        raise _invalid(exc, what="policy", code="invalid_policy") from exc
    with transaction.atomic():
        try:
            locked = ToolPolicy.objects.select_for_update().get(pk=policy.pk)
        except ToolPolicy.DoesNotExist as exc:
            raise NotFound(f"no policy for tool {policy.tool_name!r}") from exc
        before = _tool_policy_state(locked)
        for name, value in fields.items():
            setattr(locked, name, value)
        if locked.mode == ToolPolicy.Mode.LLM and not locked.llm_config:
            raise _invalid(
                RuleSetError(
                    [Problem("llmConfig", "mode llm needs an llmConfig: the exceptions a model may grant")]
                ),
                what="policy",
                code="invalid_policy",
            )
        ensure_no_loosening(actor=actor, policy=locked, before=before, after=_tool_policy_state(locked))
        locked.version += 1
        locked.updated_at = timezone.now()
        locked.updated_by_name = actor.name
        locked.save()
        _tool_policy_changed(
            policy=locked, change="updated", actor_name=actor.name, remote_addr=actor.remote_addr
        )
    logger.info(
        "tool_policy.updated team=%s tool=%s version=%d", locked.team_id, locked.tool_name, locked.version
    )
    return locked


def tool_policy_delete(*, policy: ToolPolicy, actor: Actor | None = None) -> None:
    """Delete a tool's policy; its calls are then decided by the rule set alone. Deleting always
    loosens, so a caller that may not loosen is refused (``LooseningNotAllowed``)."""
    actor = ensure_may_change_tool_policies(actor=actor, team_id=policy.team_id, tool_name=policy.tool_name)
    # Deleting loosens whatever the policy holds: no need to read it again under a lock.
    ensure_no_loosening(actor=actor, policy=policy, before=_tool_policy_state(policy), after=None)
    with transaction.atomic():
        deleted, _ = ToolPolicy.objects.filter(pk=policy.pk).delete()
        if not deleted:
            raise NotFound(f"no policy for tool {policy.tool_name!r}")
        _tool_policy_changed(
            policy=policy, change="deleted", actor_name=actor.name, remote_addr=actor.remote_addr
        )
    logger.info("tool_policy.deleted team=%s tool=%s", policy.team_id, policy.tool_name)


def tool_policy_set_active(*, policy: ToolPolicy, is_active: bool, actor: Actor | None = None) -> ToolPolicy:
    """Activate or deactivate a policy (idempotent; the version, which counts content, stays).
    Only a real change is audited. A key needs ``LOOSEN_TOOL_POLICY_SCOPE`` either way, and is
    refused on a team that requires review, even when nothing would change."""
    actor = ensure_may_change_tool_policies(
        actor=actor, team_id=policy.team_id, tool_name=policy.tool_name, scope=LOOSEN_TOOL_POLICY_SCOPE
    )
    with transaction.atomic():
        changed = ToolPolicy.objects.filter(pk=policy.pk, is_active=not is_active).update(
            is_active=is_active,
            updated_at=timezone.now(),
            updated_by_name=actor.name,
        )
        try:
            current = ToolPolicy.objects.get(pk=policy.pk)
        except ToolPolicy.DoesNotExist as exc:
            raise NotFound(f"no policy for tool {policy.tool_name!r}") from exc
        if changed:
            _tool_policy_changed(
                policy=current,
                change="activated" if is_active else "deactivated",
                actor_name=actor.name,
                remote_addr=actor.remote_addr,
            )
    if changed:
        logger.info(
            "tool_policy.%s team=%s tool=%s",
            "activated" if is_active else "deactivated",
            policy.team_id,
            policy.tool_name,
        )
    return current
