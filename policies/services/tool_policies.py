"""Writes for per-tool policies: create, update, (de)activate, delete; each chained in the team's
governance trail, each in effect at once (validate enforces it)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.trail import audit_event_append
from common.errors import Conflict, NotFound, PermissionDenied
from policies.engine import RuleSetError
from policies.engine.constraints import normalize_tool_policy
from policies.engine.loosening import tool_policy_loosened
from policies.models import ToolPolicy
from policies.services._common import author_name as _author_name
from policies.services._common import invalid as _invalid
from policies.services._common import refuse_api_key_on_reviewed_team as _refuse_api_key_on_reviewed_team

logger = logging.getLogger(__name__)


def _refuse_api_key_tool_policy_write(
    *, team_id: uuid.UUID, tool_name: Any, actor_user: User | None, actor_api_key_id: uuid.UUID | None
) -> None:
    """A tool policy takes effect at once (validate enforces it), so on a team that requires
    review an API key may not create, change, (de)activate or delete one: a person does, on
    the policies page. Checked before the body, so nothing is read, written or audited."""
    if actor_user is None and actor_api_key_id is not None:
        tool = f"tool {tool_name!r}" if isinstance(tool_name, str) and tool_name else "a tool"
        _refuse_api_key_on_reviewed_team(
            team_id=team_id,
            what=f"change the policy of {tool}",
            instead="a team admin changes it on the team's policies page",
        )


class LooseningNotAllowed(PermissionDenied):
    """The change lets through calls the policy refused (``engine.loosening``); the caller may
    only tighten or reword it."""

    code = "loosening_not_allowed"


def _tool_policy_state(policy: ToolPolicy) -> dict[str, Any]:
    return {
        "is_active": policy.is_active,
        "mode": policy.mode,
        "constraints": policy.constraints,
        "output_rules": policy.output_rules,
        "llm_config": policy.llm_config,
        "session_constraints": policy.session_constraints,
    }


def _refuse_loosening(
    *,
    policy: ToolPolicy,
    before: dict[str, Any],
    after: dict[str, Any] | None,
    may_loosen: bool,
    actor_api_key_id: uuid.UUID | None,
) -> None:
    """Refuse a change that loosens ``policy`` (from ``before`` to ``after``; None: deleted) unless
    the caller ``may_loosen``. An update calls it under the row's lock, so ``before`` is what is
    stored, not what was read earlier."""
    if may_loosen:
        return
    reasons = tool_policy_loosened(before, after)
    if not reasons:
        return
    logger.warning(
        "tool_policy.loosening_refused team=%s tool=%s api_key=%s reasons=%d",
        policy.team_id,
        policy.tool_name,
        actor_api_key_id,
        len(reasons),
    )
    raise LooseningNotAllowed(
        f"this change loosens the policy of {policy.tool_name!r} ({'; '.join(reasons)}): loosening "
        "a policy takes what deactivating it takes (an API key with the policies:publish scope, "
        "or a team admin on the policies page)",
        details={"reasons": reasons},
    )


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
        }
    audit_event_append(
        team_id=policy.team_id,
        kind=AuditEvent.Kind.TOOL_POLICY_CHANGED,
        actor_name=actor_name or "unknown",
        details=details,
        remote_addr=remote_addr,
    )


def tool_policy_create(
    *,
    team_id: uuid.UUID,
    data: Any,
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    remote_addr: str | None = None,
) -> ToolPolicy:
    """Create a tool's policy from a request body in the SDK's shape (``CreatePolicyInput``);
    it is active at once, version 1. Every problem of the body is reported with its path; a
    second policy for the same tool is a 409 (the unique constraint decides races). On a team
    with ``require_policy_review`` an API key is refused (``HumanReviewRequired``)."""
    _refuse_api_key_tool_policy_write(
        team_id=team_id,
        tool_name=data.get("toolName") if isinstance(data, Mapping) else None,
        actor_user=actor_user,
        actor_api_key_id=actor_api_key_id,
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
                updated_by_name=_author_name(actor_user, actor_api_key_id),
                created_at=now,
                updated_at=now,
                **fields,
            )
            _tool_policy_changed(
                policy=policy, change="created", actor_name=policy.updated_by_name, remote_addr=remote_addr
            )
    except IntegrityError as exc:
        raise Conflict(
            f"a policy for tool {fields['tool_name']!r} already exists; update it with PUT",
            code="policy_exists",
        ) from exc
    logger.info("tool_policy.created team=%s tool=%s", team_id, policy.tool_name)
    return policy


def tool_policy_update(
    *,
    policy: ToolPolicy,
    data: Any,
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    remote_addr: str | None = None,
    may_loosen: bool = True,
) -> ToolPolicy:
    """Change the fields the body sets (``UpdatePolicyInput``; the others stay) and bump the
    version, under the row's lock so concurrent updates each get their own version. On a team
    with ``require_policy_review`` an API key is refused (``HumanReviewRequired``); a caller
    that may not loosen (``may_loosen``: see ``policies.permissions``) is refused a change that
    lets more calls through (``LooseningNotAllowed``), and nothing changes."""
    _refuse_api_key_tool_policy_write(
        team_id=policy.team_id,
        tool_name=policy.tool_name,
        actor_user=actor_user,
        actor_api_key_id=actor_api_key_id,
    )
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
        _refuse_loosening(
            policy=locked,
            before=before,
            after=_tool_policy_state(locked),
            may_loosen=may_loosen,
            actor_api_key_id=actor_api_key_id,
        )
        locked.version += 1
        locked.updated_at = timezone.now()
        locked.updated_by_name = _author_name(actor_user, actor_api_key_id)
        locked.save()
        _tool_policy_changed(
            policy=locked, change="updated", actor_name=locked.updated_by_name, remote_addr=remote_addr
        )
    logger.info(
        "tool_policy.updated team=%s tool=%s version=%d", locked.team_id, locked.tool_name, locked.version
    )
    return locked


def tool_policy_delete(
    *,
    policy: ToolPolicy,
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    remote_addr: str | None = None,
    may_loosen: bool = True,
) -> None:
    """Delete a tool's policy; its calls are then decided by the rule set alone. On a team with
    ``require_policy_review`` an API key is refused (``HumanReviewRequired``). Deleting always
    loosens, so a caller that may not loosen is refused (``LooseningNotAllowed``)."""
    _refuse_api_key_tool_policy_write(
        team_id=policy.team_id,
        tool_name=policy.tool_name,
        actor_user=actor_user,
        actor_api_key_id=actor_api_key_id,
    )
    # Deleting loosens whatever the policy holds: no need to read it again under a lock.
    _refuse_loosening(
        policy=policy,
        before=_tool_policy_state(policy),
        after=None,
        may_loosen=may_loosen,
        actor_api_key_id=actor_api_key_id,
    )
    with transaction.atomic():
        deleted, _ = ToolPolicy.objects.filter(pk=policy.pk).delete()
        if not deleted:
            raise NotFound(f"no policy for tool {policy.tool_name!r}")
        _tool_policy_changed(
            policy=policy,
            change="deleted",
            actor_name=_author_name(actor_user, actor_api_key_id),
            remote_addr=remote_addr,
        )
    logger.info("tool_policy.deleted team=%s tool=%s", policy.team_id, policy.tool_name)


def tool_policy_set_active(
    *,
    policy: ToolPolicy,
    is_active: bool,
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    remote_addr: str | None = None,
) -> ToolPolicy:
    """Activate or deactivate a policy (idempotent; the version, which counts content, stays).
    Only a real change is audited. On a team with ``require_policy_review`` an API key is
    refused (``HumanReviewRequired``), even when nothing would change."""
    _refuse_api_key_tool_policy_write(
        team_id=policy.team_id,
        tool_name=policy.tool_name,
        actor_user=actor_user,
        actor_api_key_id=actor_api_key_id,
    )
    with transaction.atomic():
        changed = ToolPolicy.objects.filter(pk=policy.pk, is_active=not is_active).update(
            is_active=is_active,
            updated_at=timezone.now(),
            updated_by_name=_author_name(actor_user, actor_api_key_id),
        )
        try:
            current = ToolPolicy.objects.get(pk=policy.pk)
        except ToolPolicy.DoesNotExist as exc:
            raise NotFound(f"no policy for tool {policy.tool_name!r}") from exc
        if changed:
            _tool_policy_changed(
                policy=current,
                change="activated" if is_active else "deactivated",
                actor_name=current.updated_by_name,
                remote_addr=remote_addr,
            )
    if changed:
        logger.info(
            "tool_policy.%s team=%s tool=%s",
            "activated" if is_active else "deactivated",
            policy.team_id,
            policy.tool_name,
        )
    return current
