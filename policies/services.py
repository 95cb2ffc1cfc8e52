"""Writes for policies: rule-set versions, tool registration, and validating a tool call."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import yaml
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.models import AuditEvent
from audit.trail import audit_event_append
from common.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unprocessable
from common.events import RULE_SETS_GROUP, publish_on_commit, rule_set_group
from policies import source_worker
from policies.engine import (
    RuleSetError,
    compile_rule_set,
    load_rule_set,
    normalize_rule_set,
    run_fixtures,
)
from policies.engine.constraints import normalize_tool_policy
from policies.engine.errors import RuleSetTooLarge
from policies.engine.loosening import tool_policy_loosened
from policies.engine.merge import merge_proposed_rules
from policies.engine.source import STORED_LIMITS, parse_source
from policies.limits import RuleSetTooLargeError, rule_set_limits
from policies.models import PolicyDraft, RegisteredTool, RuleSetPublication, RuleSetVersion, ToolPolicy
from policies.permissions import Actor, ensure_four_eyes, ensure_four_eyes_for_publish
from policies.selectors import (
    forget_cached_rule_sets,
    forget_cached_tool_policies,
)
from tenancy.models import ApiKey, Team

logger = logging.getLogger(__name__)


def _author_name(user: User | None, api_key_id: uuid.UUID | None) -> str:
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
    author_user: User | None = None,
    author_api_key_id: uuid.UUID | None = None,
) -> RuleSetVersion:
    """Store a new draft version after checking the whole document; refuses it with every
    problem at once (path, message, line), or with ``RuleSetTooLargeError`` (413/422) when it
    is over a published limit."""
    document = rule_set_source_check(source_text=source_text, content_type=content_type)
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


def rule_set_source_check(*, source_text: str, content_type: str = "application/yaml") -> dict[str, Any]:
    """The normalized document of ``source_text``; every way it can fail to load (syntax,
    values YAML cannot build, size) is an ``ApplicationError`` naming the line."""
    try:
        return source_worker.load_source(source_text, content_type=content_type, limits=rule_set_limits())
    except RuleSetTooLarge as exc:
        raise RuleSetTooLargeError(exc) from exc
    except RuleSetError as exc:
        raise _invalid(exc, what="rule set", code="invalid_rule_set") from exc


class FixturesFailed(Unprocessable):
    code = "fixtures_failed"


def rule_set_version_publish(
    *,
    version: RuleSetVersion,
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    actor_name: str | None = None,
    remote_addr: str | None = None,
) -> RuleSetPublication:
    """Make ``version`` the team's one active version, if its fixtures pass.

    Publishing a version that was active before is a rollback, logged as such (a draft's
    first publish is a publish, whatever its number); the version it replaces is archived.
    Every process learns of it after commit (compiled caches are dropped, long-polls answer).
    On a team with ``require_policy_review`` an API
    key alone may not publish (``HumanReviewRequired``): a person has to. Whoever wrote the
    version (person or key, ``permissions.same_actor``) may not publish it (``FourEyesRequired``).
    """
    if actor_user is None and actor_api_key_id is not None:
        _refuse_api_key_on_reviewed_team(team_id=version.team_id, what=f"publish version {version.number}")
    ensure_four_eyes_for_publish(
        version=version, actor=Actor.of(user=actor_user, api_key_id=actor_api_key_id)
    )
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
        # Read before publishing sets it: was this version ever the active one?
        is_rollback = locked.was_active
        now = timezone.now()
        locked.is_active = True
        locked.status = RuleSetVersion.Status.PUBLISHED
        locked.published_at = now
        locked.save(update_fields=["is_active", "status", "published_at"])
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
        audit_event_append(
            team_id=locked.team_id,
            kind=AuditEvent.Kind.RULE_SET_PUBLISHED,
            actor_name=publication.actor_name or "unknown",
            details={
                "version": locked.number,
                "checksum": locked.checksum,
                "publication": publication.kind,
                "previous_version": previous.number if previous is not None else None,
            },
            remote_addr=remote_addr,
            now=now,
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


# --- Per-tool policies ---------------------------------------------------------------------------


class HumanReviewRequired(PermissionDenied):
    """The team requires a person to review rule changes; an API key alone cannot make them."""

    code = "human_review_required"


def _refuse_api_key_on_reviewed_team(
    *, team_id: uuid.UUID, what: str, instead: str = "a team member approves it in the browser"
) -> None:
    if Team.objects.filter(pk=team_id, require_policy_review=True).exists():
        raise HumanReviewRequired(
            f"this team requires a person's review: an API key cannot {what}; {instead}"
        )


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


def _invalid(exc: RuleSetError, *, what: str, code: str) -> InvalidInput:
    errors = [p.as_dict() for p in exc.problems]
    return InvalidInput(
        f"the {what} has {len(errors)} problem(s): {exc}",
        details={"errors": errors},
        code=code,
        extra={"errors": errors},
    )


def _tool_policy_changed(
    *, policy: ToolPolicy, change: str, actor_name: str, remote_addr: str | None
) -> None:
    """Inside the change's transaction: chain it in the team's governance trail (who, what, from
    where; created and updated entries hold the policy as it now is). After commit this process
    drops its cached policies at once, the others on the event."""
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
    team_id = policy.team_id
    transaction.on_commit(lambda: forget_cached_tool_policies(team_id=team_id))
    publish_on_commit(
        [RULE_SETS_GROUP],
        {"event": "tool_policy.changed", "team_id": str(team_id), "tool_name": policy.tool_name},
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


# --- Policy drafts -------------------------------------------------------------------------------


def _active_version(team_id: uuid.UUID) -> RuleSetVersion | None:
    return RuleSetVersion.objects.filter(team_id=team_id, is_active=True).first()


def _draft_source(
    *, active: RuleSetVersion | None, rules: list[dict[str, Any]], note: str
) -> tuple[str, str]:
    """The source of the version a draft would become: the active version's document (as its
    author wrote it) with the draft's rules merged in; YAML unless the active one is JSON."""
    base = None
    is_json = active is not None and active.source_format == RuleSetVersion.SourceFormat.JSON
    if active is not None:
        # Read as it was accepted (the loader's JSON-only values: dates stay text).
        base, _ = parse_source(active.source_text, content_type=active.source_format, limits=STORED_LIMITS)
    document = merge_proposed_rules(base, rules)
    if is_json:
        return json.dumps(document, indent=2), "application/json"
    return f"# {note}\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "application/yaml"


def _check_draft_rules(*, team_id: uuid.UUID, rules: list[dict[str, Any]]) -> RuleSetVersion | None:
    """Refuse rules the loader refuses (paths like ``rules[0].action``), and a merge with the
    active version that would not load; returns that active version."""
    limits = rule_set_limits()
    try:
        normalize_rule_set({"rules": rules}, limits=limits)
        active = _active_version(team_id)
        source, content_type = _draft_source(active=active, rules=rules, note="check")
        load_rule_set(source, content_type=content_type, limits=limits)
    except RuleSetTooLarge as exc:
        raise RuleSetTooLargeError(exc, what="draft's rule set") from exc
    except RuleSetError as exc:
        raise _invalid(exc, what="draft's rule set", code="invalid_rule_set") from exc
    return active


def policy_draft_create(
    *,
    team_id: uuid.UUID,
    name: str,
    rules: list[dict[str, Any]],
    description: str = "",
    status: str = PolicyDraft.Status.DRAFT,
    created_by_agent_id: str = "",
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
) -> PolicyDraft:
    """Propose rules (Policy IR v1, or the short form) against the team's active version."""
    if status not in PolicyDraft.OPEN_STATUSES:
        raise InvalidInput("status: a new draft is draft or pending_review")
    active = _check_draft_rules(team_id=team_id, rules=rules)
    draft = PolicyDraft.objects.create(
        team_id=team_id,
        name=name,
        description=description,
        status=status,
        rules=rules,
        created_by_agent_id=created_by_agent_id,
        created_by_user=actor_user if actor_user is not None and actor_user.pk else None,
        created_by_api_key_id=actor_api_key_id,
        created_by_name=_author_name(actor_user, actor_api_key_id),
        base_version_number=active.number if active is not None else None,
    )
    logger.info("policy_draft.created team=%s draft=%s rules=%d", team_id, draft.id, len(rules))
    return draft


def _lock_open_draft(draft: PolicyDraft) -> PolicyDraft:
    locked = PolicyDraft.objects.select_for_update().select_related("team").get(pk=draft.pk)
    if locked.status not in PolicyDraft.OPEN_STATUSES:
        raise Conflict(f"this policy draft is already {locked.status}", code="draft_already_decided")
    return locked


def _close_draft(draft: PolicyDraft, **fields: Any) -> None:
    # Conditional on the draft still being open: whatever the backend's locking, it closes once.
    closed = PolicyDraft.objects.filter(pk=draft.pk, status__in=PolicyDraft.OPEN_STATUSES).update(
        updated_at=timezone.now(), **fields
    )
    if closed != 1:
        raise Conflict("this policy draft was decided meanwhile", code="draft_already_decided")


def policy_draft_approve(
    *,
    draft: PolicyDraft,
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    remote_addr: str | None = None,
) -> PolicyDraft:
    """Approve a draft: a new rule-set version (the active one's rules, same-id rules replaced
    by the draft's, new ones appended) is created and published in one transaction, and the
    draft records it and who approved. Happens once: a decided draft is a 409.

    * The publish runs the version's fixtures; when they fail nothing is kept (422) and the
      draft stays open.
    * Four-eyes: whoever proposed a draft (person or key, ``permissions.same_actor``) may not
      approve it (``FourEyesRequired``). Whether ``actor_user`` may approve for the team at all
      is the caller's check.
    * On a team with ``require_policy_review`` an API key's approval only moves the draft to
      ``pending_review``; a person approves it later (again with ``HumanReviewRequired``).
    """
    if actor_user is None and actor_api_key_id is None:
        raise PermissionDenied("approving a policy draft takes a person or an API key")
    with transaction.atomic():
        locked = _lock_open_draft(draft)
        ensure_four_eyes(
            proposer=Actor(locked.created_by_user_id, locked.created_by_api_key_id),
            actor=Actor.of(user=actor_user, api_key_id=actor_api_key_id),
            did="proposed this draft",
            then="approve it",
            what=f"policy_draft:{locked.pk}",
        )
        actor_name = _author_name(actor_user, actor_api_key_id)
        if actor_user is None and locked.team.require_policy_review:
            if locked.status == PolicyDraft.Status.PENDING_REVIEW:
                raise HumanReviewRequired(
                    "this draft awaits a person's review: this team requires a team member to "
                    "approve it in the browser"
                )
            _close_draft_for_review(locked, actor_name=actor_name)
        else:
            active = _active_version(locked.team_id)
            source, content_type = _draft_source(
                active=active,
                rules=locked.rules,
                note=f"Policy draft {locked.id} approved on top of version "
                f"{active.number if active is not None else '(none)'}",
            )
            version = rule_set_version_create(
                team=locked.team,
                source_text=source,
                content_type=content_type,
                author_user=locked.created_by_user,
                author_api_key_id=locked.created_by_api_key_id,
            )
            rule_set_version_publish(
                version=version,
                actor_user=actor_user,
                actor_api_key_id=actor_api_key_id,
                actor_name=actor_name,
                remote_addr=remote_addr,
            )
            _close_draft(
                locked,
                status=PolicyDraft.Status.APPROVED,
                result_version=version,
                decided_by_user=actor_user if actor_user is not None and actor_user.pk else None,
                decided_by_api_key_id=actor_api_key_id,
                decided_by_name=actor_name,
                decided_at=timezone.now(),
            )
            logger.info("policy_draft.approved draft=%s version=%d", locked.id, version.number)
    return PolicyDraft.objects.select_related("result_version").get(pk=draft.pk)


def _close_draft_for_review(draft: PolicyDraft, *, actor_name: str) -> None:
    moved = PolicyDraft.objects.filter(pk=draft.pk, status=PolicyDraft.Status.DRAFT).update(
        status=PolicyDraft.Status.PENDING_REVIEW,
        review_requested_by_name=actor_name,
        review_requested_at=timezone.now(),
        updated_at=timezone.now(),
    )
    if moved != 1:
        raise Conflict("this policy draft changed meanwhile", code="draft_already_decided")
    logger.info("policy_draft.review_requested draft=%s", draft.id)


def policy_draft_reject(
    *,
    draft: PolicyDraft,
    reason: str = "",
    actor_user: User | None = None,
    actor_api_key_id: uuid.UUID | None = None,
) -> PolicyDraft:
    """Reject a draft with a reason; happens once (a decided draft is a 409)."""
    with transaction.atomic():
        locked = _lock_open_draft(draft)
        _close_draft(
            locked,
            status=PolicyDraft.Status.REJECTED,
            rejection_reason=reason,
            decided_by_user=actor_user if actor_user is not None and actor_user.pk else None,
            decided_by_api_key_id=actor_api_key_id,
            decided_by_name=_author_name(actor_user, actor_api_key_id),
            decided_at=timezone.now(),
        )
    logger.info("policy_draft.rejected draft=%s", draft.id)
    return PolicyDraft.objects.select_related("result_version").get(pk=draft.pk)
