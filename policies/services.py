"""Writes for policies: rule-set versions, tool registration, and validating a tool call."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import decision_record
from common.errors import Conflict, InvalidInput
from policies.engine import Decision, RuleSetError, ToolCall, load_rule_set
from policies.models import RegisteredTool, RuleSetVersion
from policies.selectors import active_rule_set, forget_cached_rule_sets
from tenancy.models import ApiKey, Team
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import team_default_approval_timeout

logger = logging.getLogger(__name__)


def rule_set_version_create(
    *,
    team: Team,
    source_text: str,
    content_type: str = "application/yaml",
    author_user: AbstractBaseUser | None = None,
    author_api_key: ApiKey | None = None,
) -> RuleSetVersion:
    """Store a new draft version after checking the whole document; raises InvalidInput listing
    every problem (path, message, line)."""
    try:
        document = load_rule_set(source_text, content_type=content_type)
    except RuleSetError as exc:
        raise InvalidInput(
            f"the rule set has {len(exc.problems)} problem(s): {exc}",
            details={"errors": [p.as_dict() for p in exc.problems]},
            code="invalid_rule_set",
        ) from exc
    source_format = (
        RuleSetVersion.SourceFormat.JSON if "json" in content_type else RuleSetVersion.SourceFormat.YAML
    )
    author_name = ""
    if author_user is not None:
        author_name = author_user.get_username()
    elif author_api_key is not None:
        author_name = f"api-key:{author_api_key.name}"
    with transaction.atomic():
        # Lock the team row so concurrent uploads get consecutive, distinct numbers.
        Team.objects.select_for_update().get(pk=team.pk)
        last = RuleSetVersion.objects.filter(team=team).aggregate(last=Max("number"))["last"] or 0
        version = RuleSetVersion.objects.create(
            team=team,
            number=last + 1,
            source_text=source_text,
            source_format=source_format,
            document=document,
            checksum=hashlib.sha256(source_text.encode("utf-8")).hexdigest(),
            author_user=author_user if author_user is not None and author_user.pk else None,
            author_api_key=author_api_key,
            author_name=author_name,
        )
    logger.info("rule_set_version.created team=%s number=%d", team.slug, version.number)
    return version


def rule_set_version_publish(*, version: RuleSetVersion) -> RuleSetVersion:
    """Make ``version`` the team's one active version; the previous one is archived."""
    with transaction.atomic():
        locked = RuleSetVersion.objects.select_for_update().get(pk=version.pk)
        if locked.is_active:
            raise Conflict(f"version {locked.number} is already active")
        now = timezone.now()
        # Deactivate first: the partial unique index allows one active row per team at a time.
        RuleSetVersion.objects.filter(team_id=locked.team_id, is_active=True).update(
            is_active=False, status=RuleSetVersion.Status.ARCHIVED
        )
        locked.is_active = True
        locked.status = RuleSetVersion.Status.PUBLISHED
        locked.published_at = now
        locked.save(update_fields=["is_active", "status", "published_at"])
        team_id = locked.team_id
        transaction.on_commit(lambda: forget_cached_rule_sets(team_id=team_id))
    logger.info("rule_set_version.published team=%s number=%d", locked.team_id, locked.number)
    return locked


def tools_register(*, team_id: uuid.UUID, tools: list[dict[str, Any]]) -> list[RegisteredTool]:
    """Upsert tool signatures by name (re-registering a tool updates its description and parameters)."""
    registered = []
    with transaction.atomic():
        for tool in tools:
            obj, _ = RegisteredTool.objects.update_or_create(
                team_id=team_id,
                name=tool["name"],
                defaults={
                    "description": tool.get("description") or "",
                    "parameters": tool.get("parameters") or [],
                },
            )
            registered.append(obj)
    logger.info("tools.registered team=%s count=%d", team_id, len(registered))
    return registered


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    decision: Decision
    decision_id: uuid.UUID
    approval_id: uuid.UUID | None
    rule_set_version: int | None
    latency_ms: float


async def tool_call_validate(
    *,
    principal: ApiKeyPrincipal,
    tool_name: str,
    arguments: dict[str, Any],
    context: dict[str, Any],
    started: float,
) -> ValidationOutcome:
    """Decide a tool call against the team's active rule set and record the decision durably
    (with its pending approval, when one is required) before returning.

    The common case touches no database on this coroutine: the compiled rule set and the key
    come from process caches and the write goes to the group-commit writer.
    """
    team_id = principal.team_id
    active = await active_rule_set(team_id=team_id)
    now = timezone.now()
    decision = active.rules.evaluate(
        ToolCall(tool_name=tool_name, arguments=arguments, context=context, now=now)
    )
    default_timeout = None
    if decision.decision == "require_approval":
        default_timeout = await team_default_approval_timeout(team_id=team_id)
    latency_ms = (time.perf_counter() - started) * 1000.0
    recorded = await decision_record(
        principal=principal,
        team_default_timeout_seconds=default_timeout,
        tool_name=tool_name,
        arguments=arguments,
        context=context,
        decision=decision,
        rule_set_version=active.version_number,
        latency_ms=latency_ms,
        now=now,
    )
    return ValidationOutcome(
        decision=decision,
        decision_id=recorded.decision_id,
        approval_id=recorded.approval_id,
        rule_set_version=active.version_number,
        latency_ms=latency_ms,
    )
