"""Who may publish a team's rule set, decide its drafts and change its tool policies: the rules
the policy services apply (``policies.services``), one function each, so that whoever calls a
service (a page, the API, a task, a command) gets the same answer.

Publishing changes what every agent of the team is allowed to do, so it takes a team admin (or
staff), or an API key with the ``policies:publish`` scope; never the one who wrote it, person or
key (four-eyes, ``tenancy.actor.same_actor``): someone else has to have read it. Rolling back is
publishing a version that was active before, under the same rule; approving a policy draft
publishes it, under the same rule. A tool policy takes effect the moment it is written, so
changing one takes a team admin too, or a key with ``policies:write`` (``policies:publish`` to
loosen one). On a team with ``require_policy_review`` no key publishes or changes a tool policy:
a person does. A process (``Actor.process``: a management command) is trusted.

Which team a caller may see at all is settled before: a page's ``team_access_or_404``, an API
key's own team (each rule also refuses a key of another team as not found).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from common.errors import NotFound, PermissionDenied
from policies.engine.loosening import tool_policy_loosened
from policies.models import PolicyDraft, RuleSetVersion, ToolPolicy
from tenancy.actor import Actor, ActorRecord, Identities, actor_identities, is_same_actor, same_actor
from tenancy.models import ApiKey, Team
from tenancy.scopes import require_scopes
from tenancy.selectors import TeamAccess, user_is_team_admin

logger = logging.getLogger(__name__)

PUBLISH_SCOPE = ApiKey.Scope.POLICIES_PUBLISH
WRITE_SCOPE = ApiKey.Scope.POLICIES_WRITE
# Deactivating a tool policy, and every other change that loosens one (deleting it, widening a
# constraint, ...: ``policies.engine.loosening``), takes this scope; ``policies:write`` only
# creates and tightens. On a team with ``require_policy_review`` no key may change a policy.
LOOSEN_TOOL_POLICY_SCOPE = PUBLISH_SCOPE

ONLY_ADMINS_PUBLISH = "Only team admins can publish or roll back rule sets."
ONLY_ADMINS_DECIDE_DRAFTS = "Only team admins can approve or reject policy drafts."
ONLY_ADMINS_CHANGE_TOOL_POLICIES = "Only team admins can create, change or delete tool policies."


class FourEyesRequired(PermissionDenied):
    """Whoever proposed or uploaded something may not approve or publish it themselves."""

    code = "four_eyes_required"


class HumanReviewRequired(PermissionDenied):
    """The team requires a person to review rule changes; an API key alone cannot make them."""

    code = "human_review_required"


class LooseningNotAllowed(PermissionDenied):
    """The change lets through calls the policy refused (``engine.loosening``); the caller may
    only tighten or reword it."""

    code = "loosening_not_allowed"


# --- The parts every rule is made of ------------------------------------------------------------


def acting(actor: Actor | None, *, what: str) -> Actor:
    """``actor``, or a refusal when there is none: every change has someone to answer for it."""
    if actor is None:
        raise PermissionDenied(f"{what} takes a person, an API key or a process")
    return actor


def _ensure_admin_or_scoped_key(
    *, actor: Actor, team_id: uuid.UUID, refusal: str, code: str, scope: str
) -> None:
    """A person administers the team (``refusal``, ``code`` otherwise); a key is the team's own
    and holds ``scope`` (``tenancy.scopes.MissingScope`` otherwise, as the API's edge refuses it)."""
    if actor.user is not None and not user_is_team_admin(user=actor.user, team_id=team_id):
        raise PermissionDenied(refusal, code=code)
    if actor.api_key is not None:
        if actor.api_key.team_id != team_id:
            raise NotFound("team not found")
        require_scopes(actor.api_key, [scope])


def refuse_api_key_on_reviewed_team(
    *, actor: Actor, team_id: uuid.UUID, what: str, instead: str = "a team member approves it in the browser"
) -> None:
    """On a team with ``require_policy_review`` an API key may not ``what`` (``HumanReviewRequired``)."""
    if actor.api_key is None:
        return
    if Team.objects.filter(pk=team_id, require_policy_review=True).exists():
        raise HumanReviewRequired(
            f"this team requires a person's review: an API key cannot {what}; {instead}"
        )


# --- Four-eyes ----------------------------------------------------------------------------------


def four_eyes_refusal(*, actor: Actor, did: str, then: str) -> str:
    """The refusal's words: ``did`` what the proposer did ("wrote version 3"), ``then`` what
    someone else has to do ("publish it")."""
    if actor.user is not None:
        return f"You {did}, so someone else has to {then} (four-eyes: another team admin reviews it)."
    return (
        f"This API key (or the person it belongs to) {did}, so someone else has to {then} "
        "(four-eyes: another key or a team admin reviews it)."
    )


def ensure_four_eyes(*, proposer: ActorRecord, actor: Actor, did: str, then: str, what: str) -> None:
    """Refuse (``FourEyesRequired``, logged as ``policy.four_eyes_refused``) when ``actor`` is
    the ``proposer`` (``same_actor``); ``what`` names the object in the log."""
    if not same_actor(proposer, actor):
        return
    logger.warning(
        "policy.four_eyes_refused what=%s user=%s api_key=%s", what, actor.user_id, actor.api_key_id
    )
    raise FourEyesRequired(four_eyes_refusal(actor=actor, did=did, then=then))


def _version_author(version: RuleSetVersion) -> ActorRecord:
    return ActorRecord(version.author_user_id, version.author_api_key_id)


def draft_proposer(draft: PolicyDraft) -> ActorRecord:
    return ActorRecord(draft.created_by_user_id, draft.created_by_api_key_id, draft.created_by_name)


# --- Rule sets ----------------------------------------------------------------------------------


def ensure_may_publish_rule_set(*, actor: Actor | None, version: RuleSetVersion) -> Actor:
    """Publish or roll back to ``version``: a team admin or a key with ``policies:publish``; on a
    team with ``require_policy_review`` not a key (``HumanReviewRequired``); never whoever wrote
    the version (``FourEyesRequired``). Returns the actor."""
    actor = acting(actor, what="publishing a rule set")
    _ensure_admin_or_scoped_key(
        actor=actor,
        team_id=version.team_id,
        refusal=ONLY_ADMINS_PUBLISH,
        code="publish_not_allowed",
        scope=PUBLISH_SCOPE,
    )
    refuse_api_key_on_reviewed_team(
        actor=actor, team_id=version.team_id, what=f"publish version {version.number}"
    )
    ensure_four_eyes(
        proposer=_version_author(version),
        actor=actor,
        did=f"wrote version {version.number}",
        then="publish it",
        what=f"rule_set_version:{version.pk}",
    )
    return actor


def rule_set_publish_refusal(
    *, access: TeamAccess, actor: Actor, version: RuleSetVersion, identities: Identities | None = None
) -> str | None:
    """Why the person ``actor`` (with ``access`` to the team) may not publish ``version``, or None
    when they may: what the page says beside a publish button, as ``ensure_may_publish_rule_set``
    would refuse it. ``identities``: the actor's (``actor_identities``), when the caller checks
    many versions."""
    if not access.is_admin:
        return ONLY_ADMINS_PUBLISH
    if identities is None:
        identities = actor_identities(actor)
    if is_same_actor(proposer=_version_author(version), identities=identities):
        return four_eyes_refusal(actor=actor, did=f"wrote version {version.number}", then="publish it")
    return None


# --- Policy drafts ------------------------------------------------------------------------------


def ensure_may_decide_policy_draft(*, actor: Actor | None, draft: PolicyDraft, what: str) -> Actor:
    """Approve or reject ``draft`` (``what``: "approving a policy draft"): approving publishes a
    version, so deciding drafts takes a team admin (or staff), or a key with ``policies:publish``.
    Four-eyes (``ensure_four_eyes`` against ``draft_proposer``) the approve service checks under
    the draft's lock. Returns the actor."""
    actor = acting(actor, what=what)
    _ensure_admin_or_scoped_key(
        actor=actor,
        team_id=draft.team_id,
        refusal=ONLY_ADMINS_DECIDE_DRAFTS,
        code="draft_decision_not_allowed",
        scope=PUBLISH_SCOPE,
    )
    return actor


def policy_draft_approve_refusal(*, actor: Actor, draft: PolicyDraft, identities: Identities) -> str | None:
    """Why ``actor`` may not approve ``draft`` by four-eyes (they proposed it), or None: what the
    page says beside its approve button, as ``policy_draft_approve`` would refuse it."""
    if is_same_actor(proposer=draft_proposer(draft), identities=identities):
        return four_eyes_refusal(actor=actor, did="proposed this draft", then="approve it")
    return None


# --- Tool policies ------------------------------------------------------------------------------


def ensure_may_change_tool_policies(
    *, actor: Actor | None, team_id: uuid.UUID, tool_name: Any, scope: str = WRITE_SCOPE
) -> Actor:
    """Create, replace, (de)activate or delete a tool policy: it changes what agents may do at
    once (no publish step), so it takes a team admin (or staff), as publishing does, or a key
    with ``scope`` (``policies:write``; activating and deactivating take ``policies:publish``).
    On a team with ``require_policy_review`` not a key (``HumanReviewRequired``): a person
    changes it on the team's policies page. Checked before the body is read. Returns the actor."""
    actor = acting(actor, what="changing a tool policy")
    _ensure_admin_or_scoped_key(
        actor=actor,
        team_id=team_id,
        refusal=ONLY_ADMINS_CHANGE_TOOL_POLICIES,
        code="tool_policy_change_not_allowed",
        scope=scope,
    )
    tool = f"tool {tool_name!r}" if isinstance(tool_name, str) and tool_name else "a tool"
    refuse_api_key_on_reviewed_team(
        actor=actor,
        team_id=team_id,
        what=f"change the policy of {tool}",
        instead="a team admin changes it on the team's policies page",
    )
    return actor


def may_loosen_tool_policies(actor: Actor) -> bool:
    """Whether ``actor`` may loosen a tool policy: a person or process that may change it at all
    may; a key only with ``LOOSEN_TOOL_POLICY_SCOPE``."""
    return actor.api_key is None or actor.api_key.has_scope(LOOSEN_TOOL_POLICY_SCOPE)


def ensure_no_loosening(
    *, actor: Actor, policy: ToolPolicy, before: dict[str, Any], after: dict[str, Any] | None
) -> None:
    """Refuse (``LooseningNotAllowed``) a change that loosens ``policy`` (from ``before`` to
    ``after``; None: deleted) unless ``may_loosen_tool_policies``. An update calls it under the
    row's lock, so ``before`` is what is stored, not what was read earlier."""
    if may_loosen_tool_policies(actor):
        return
    reasons = tool_policy_loosened(before, after)
    if not reasons:
        return
    logger.warning(
        "tool_policy.loosening_refused team=%s tool=%s api_key=%s reasons=%d",
        policy.team_id,
        policy.tool_name,
        actor.api_key_id,
        len(reasons),
    )
    raise LooseningNotAllowed(
        f"this change loosens the policy of {policy.tool_name!r} ({'; '.join(reasons)}): loosening "
        "a policy takes what deactivating it takes (an API key with the policies:publish scope, "
        "or a team admin on the policies page)",
        details={"reasons": reasons},
    )
