"""Writes for policy drafts: rules an agent or a person proposes against the active version,
approved (a new version, published) or rejected once."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone

from common.errors import Conflict, InvalidInput
from policies.engine import RuleSetError, load_rule_set, normalize_rule_set
from policies.engine.errors import RuleSetTooLarge
from policies.engine.merge import merge_proposed_rules
from policies.engine.source import STORED_LIMITS, parse_source
from policies.limits import RuleSetTooLargeError, rule_set_limits
from policies.models import PolicyDraft, RuleSetVersion
from policies.permissions import (
    HumanReviewRequired,
    draft_proposer,
    ensure_four_eyes,
    ensure_may_decide_policy_draft,
)
from policies.services._common import invalid as _invalid
from policies.services.rule_sets import rule_set_version_create, rule_set_version_publish
from tenancy.actor import Actor

logger = logging.getLogger(__name__)


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
    actor: Actor | None = None,
) -> PolicyDraft:
    """Propose rules (Policy IR v1, or the short form) against the team's active version, as
    ``actor`` (None records nobody)."""
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
        created_by_user=actor.user if actor is not None else None,
        created_by_api_key_id=actor.api_key_id if actor is not None else None,
        created_by_name=actor.name if actor is not None else "",
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


def policy_draft_approve(*, draft: PolicyDraft, actor: Actor | None = None) -> PolicyDraft:
    """Approve a draft: a new rule-set version (the active one's rules, same-id rules replaced
    by the draft's, new ones appended) is created and published in one transaction, and the
    draft records it and who approved. Happens once: a decided draft is a 409.

    * Who may decide drafts: ``permissions.ensure_may_decide_policy_draft`` (a team admin, or a
      key with ``policies:publish``); the publish applies its own rule as well.
    * The publish runs the version's fixtures; when they fail nothing is kept (422) and the
      draft stays open.
    * Four-eyes: whoever proposed a draft (person or key, ``tenancy.actor.same_actor``) may not
      approve it (``FourEyesRequired``).
    * On a team with ``require_policy_review`` an API key's approval only moves the draft to
      ``pending_review``; a person approves it later (again with ``HumanReviewRequired``).
    """
    actor = ensure_may_decide_policy_draft(actor=actor, draft=draft, what="approving a policy draft")
    with transaction.atomic():
        locked = _lock_open_draft(draft)
        ensure_four_eyes(
            proposer=draft_proposer(locked),
            actor=actor,
            did="proposed this draft",
            then="approve it",
            what=f"policy_draft:{locked.pk}",
        )
        if actor.api_key is not None and locked.team.require_policy_review:
            if locked.status == PolicyDraft.Status.PENDING_REVIEW:
                raise HumanReviewRequired(
                    "this draft awaits a person's review: this team requires a team member to "
                    "approve it in the browser"
                )
            _close_draft_for_review(locked, actor_name=actor.name)
        else:
            active = _active_version(locked.team_id)
            source, content_type = _draft_source(
                active=active,
                rules=locked.rules,
                note=f"Policy draft {locked.id} approved on top of version "
                f"{active.number if active is not None else '(none)'}",
            )
            version = rule_set_version_create(
                team=locked.team, source_text=source, content_type=content_type, author=draft_proposer(locked)
            )
            rule_set_version_publish(version=version, actor=actor)
            _close_draft(
                locked,
                status=PolicyDraft.Status.APPROVED,
                result_version=version,
                decided_by_user=actor.user,
                decided_by_api_key_id=actor.api_key_id,
                decided_by_name=actor.name,
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
    actor: Actor | None = None,
) -> PolicyDraft:
    """Reject a draft with a reason; happens once (a decided draft is a 409). Who may:
    ``permissions.ensure_may_decide_policy_draft``, as for approving."""
    actor = ensure_may_decide_policy_draft(actor=actor, draft=draft, what="rejecting a policy draft")
    with transaction.atomic():
        locked = _lock_open_draft(draft)
        _close_draft(
            locked,
            status=PolicyDraft.Status.REJECTED,
            rejection_reason=reason,
            decided_by_user=actor.user,
            decided_by_api_key_id=actor.api_key_id,
            decided_by_name=actor.name,
            decided_at=timezone.now(),
        )
    logger.info("policy_draft.rejected draft=%s", draft.id)
    return PolicyDraft.objects.select_related("result_version").get(pk=draft.pk)
