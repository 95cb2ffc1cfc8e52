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
from common.errors import Conflict, InvalidInput, Unprocessable
from common.events import RULE_SETS_GROUP, publish_on_commit, rule_set_group
from policies.engine import (
    CompiledRuleSet,
    Decision,
    RuleSetError,
    ToolCall,
    compile_rule_set,
    load_rule_set,
    run_fixtures,
)
from policies.models import RegisteredTool, RuleSetPublication, RuleSetVersion
from policies.selectors import ActiveRuleSet, active_rule_set, forget_cached_rule_sets
from tenancy.models import ApiKey, Team
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import team_default_approval_timeout

logger = logging.getLogger(__name__)


def _author_name(user: AbstractBaseUser | None, api_key_id: uuid.UUID | None) -> str:
    if user is not None:
        return user.get_username()
    if api_key_id is not None:
        key = ApiKey.objects.filter(pk=api_key_id).values_list("name", "prefix").first()
        if key is not None:
            return f"API key {key[0]} ({key[1]}…)"
    return ""


def rule_set_version_create(
    *,
    team: Team,
    source_text: str,
    content_type: str = "application/yaml",
    author_user: AbstractBaseUser | None = None,
    author_api_key_id: uuid.UUID | None = None,
) -> RuleSetVersion:
    """Store a new draft version after checking the whole document; refuses it with every
    problem at once (path, message, YAML line)."""
    try:
        document = load_rule_set(source_text, content_type=content_type)
    except RuleSetError as exc:
        errors = [p.as_dict() for p in exc.problems]
        raise InvalidInput(
            f"the rule set has {len(errors)} problem(s): {exc}",
            details={"errors": errors},
            code="invalid_rule_set",
            extra={"errors": errors},
        ) from exc
    is_json = "json" in content_type
    with transaction.atomic():
        # Lock the team row so concurrent uploads get consecutive, distinct numbers.
        Team.objects.select_for_update().get(pk=team.pk)
        last = RuleSetVersion.objects.filter(team=team).aggregate(last=Max("number"))["last"] or 0
        version = RuleSetVersion.objects.create(
            team=team,
            number=last + 1,
            source_text=source_text,
            source_format=RuleSetVersion.SourceFormat.JSON if is_json else RuleSetVersion.SourceFormat.YAML,
            document=document,
            checksum=hashlib.sha256(source_text.encode("utf-8")).hexdigest(),
            author_user=author_user if author_user is not None and author_user.pk else None,
            author_api_key_id=author_api_key_id,
            author_name=_author_name(author_user, author_api_key_id),
        )
    logger.info("rule_set_version.created team=%s number=%d", team.slug, version.number)
    return version


class FixturesFailed(Unprocessable):
    code = "fixtures_failed"


def rule_set_version_publish(
    *,
    version: RuleSetVersion,
    actor_user: AbstractBaseUser | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    actor_name: str | None = None,
) -> RuleSetPublication:
    """Make ``version`` the team's one active version, if its fixtures pass.

    Publishing a version older than the active one is a rollback, logged as such; the
    version it replaces is archived. Every process learns of it after commit (compiled
    caches are dropped, long-polls answer).
    """
    results = run_fixtures(
        compile_rule_set(version.document), version.document.get("fixtures", []), now=timezone.now()
    )
    failed = [r.as_dict() for r in results if not r.passed]
    if failed:
        raise FixturesFailed(
            f"{len(failed)} of {len(results)} fixture test(s) failed; version {version.number} was not published",
            details={"results": [r.as_dict() for r in results]},
        )
    with transaction.atomic():
        # Lock the team: two publishes of the same team serialize, so exactly one wins each turn.
        Team.objects.select_for_update().get(pk=version.team_id)
        locked = RuleSetVersion.objects.get(pk=version.pk)
        previous = RuleSetVersion.objects.filter(team_id=locked.team_id, is_active=True).first()
        if previous is not None and previous.pk == locked.pk:
            raise Conflict(f"version {locked.number} is already active")
        # Deactivate first: the partial unique index allows one active row per team at a time.
        RuleSetVersion.objects.filter(team_id=locked.team_id, is_active=True).update(
            is_active=False, status=RuleSetVersion.Status.ARCHIVED
        )
        now = timezone.now()
        locked.is_active = True
        locked.status = RuleSetVersion.Status.PUBLISHED
        locked.published_at = now
        locked.save(update_fields=["is_active", "status", "published_at"])
        is_rollback = previous is not None and locked.number < previous.number
        publication = RuleSetPublication.objects.create(
            team_id=locked.team_id,
            version=locked,
            previous_version=previous,
            kind=RuleSetPublication.Kind.ROLLBACK if is_rollback else RuleSetPublication.Kind.PUBLISH,
            actor_user=actor_user if actor_user is not None and actor_user.pk else None,
            actor_api_key_id=actor_api_key_id,
            actor_name=actor_name if actor_name is not None else _author_name(actor_user, actor_api_key_id),
            created_at=now,
        )
        team_id = locked.team_id
        transaction.on_commit(lambda: forget_cached_rule_sets(team_id=team_id))
        publish_on_commit(
            [RULE_SETS_GROUP, rule_set_group(team_id)],
            {"event": "rule_set.published", "team_id": str(team_id), "version": locked.number},
        )
    logger.info("rule_set_version.%s team=%s number=%d", publication.kind, locked.team_id, locked.number)
    return publication


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
    rules: CompiledRuleSet | None = None,
) -> ValidationOutcome:
    """Decide a tool call against the team's active rule set (or ``rules``, given inline by an
    SDK in API mode) and record the decision durably (with its pending approval, when one is
    required) before returning.

    The common case touches no database on this coroutine: the compiled rule set and the key
    come from process caches and the write goes to the group-commit writer.
    """
    team_id = principal.team_id
    active = await active_rule_set(team_id=team_id) if rules is None else ActiveRuleSet(None, None, rules)
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
