"""Who may publish a team's rule set, decide its drafts and change its tool policies.

Publishing changes what every agent of the team is allowed to do, so on the dashboard it takes
a team admin (or staff), and through the API the ``policies:publish`` scope; never the one who
wrote it, person or key (four-eyes, ``same_actor``): someone else has to have read it. Rolling
back is publishing a version that was active before, under the same rule; approving a policy
draft publishes it, under the same rule. A tool policy takes effect the moment it is written,
so changing one takes a team admin too.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User

from common.errors import PermissionDenied
from policies.models import RuleSetVersion
from tenancy.actor import Identities, actor_identities, is_same_actor, same_actor
from tenancy.models import ApiKey
from tenancy.principal import ApiKeyPrincipal
from tenancy.selectors import TeamAccess

logger = logging.getLogger(__name__)

# Deactivating a tool policy, and every other change that loosens one (deleting it, widening a
# constraint, ...: ``policies.engine.loosening``), takes this scope; ``policies:write`` only
# creates and tightens. On a team with ``require_policy_review`` no key may change a policy.
LOOSEN_TOOL_POLICY_SCOPE = ApiKey.Scope.POLICIES_PUBLISH


def api_key_may_loosen_tool_policies(principal: ApiKeyPrincipal) -> bool:
    return principal.has_scope(LOOSEN_TOOL_POLICY_SCOPE)


# --- Four-eyes: who is "the same actor" ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """Who proposed, uploaded, approved or published something: a signed-in person, an API
    key, or both (a key acting for a person). Four-eyes compares them through
    ``tenancy.actor.actor_identities``."""

    user_id: int | None = None
    api_key_id: uuid.UUID | None = None

    @classmethod
    def of(cls, *, user: User | AnonymousUser | None = None, api_key_id: uuid.UUID | None = None) -> Actor:
        return cls(user.pk if user is not None and user.pk else None, api_key_id)


class FourEyesRequired(PermissionDenied):
    """Whoever proposed or uploaded something may not approve or publish it themselves."""

    code = "four_eyes_required"


def four_eyes_refusal(*, actor: Actor, did: str, then: str) -> str:
    """The refusal's words: ``did`` what the proposer did ("wrote version 3"), ``then`` what
    someone else has to do ("publish it")."""
    if actor.user_id is not None and actor.api_key_id is None:
        return f"You {did}, so someone else has to {then} (four-eyes: another team admin reviews it)."
    return (
        f"This API key (or the person it belongs to) {did}, so someone else has to {then} "
        "(four-eyes: another key or a team admin reviews it)."
    )


def ensure_four_eyes(*, proposer: Actor, actor: Actor, did: str, then: str, what: str) -> None:
    """Refuse (``FourEyesRequired``, logged as ``policy.four_eyes_refused``) when ``actor`` is
    the ``proposer`` (``same_actor``); ``what`` names the object in the log."""
    if not same_actor(proposer, actor):
        return
    logger.warning(
        "policy.four_eyes_refused what=%s user=%s api_key=%s", what, actor.user_id, actor.api_key_id
    )
    raise FourEyesRequired(four_eyes_refusal(actor=actor, did=did, then=then))


def _version_author(version: RuleSetVersion) -> Actor:
    return Actor(version.author_user_id, version.author_api_key_id)


def ensure_four_eyes_for_publish(*, version: RuleSetVersion, actor: Actor) -> None:
    ensure_four_eyes(
        proposer=_version_author(version),
        actor=actor,
        did=f"wrote version {version.number}",
        then="publish it",
        what=f"rule_set_version:{version.pk}",
    )


def rule_set_publish_refusal(
    *,
    access: TeamAccess,
    user: User | AnonymousUser,
    version: RuleSetVersion,
    identities: Identities | None = None,
) -> str | None:
    """Why ``user`` may not publish ``version``, or None when they may. ``identities``: the
    user's (``actor_identities``), when the caller checks many versions."""
    if not access.is_admin:
        return "Only team admins can publish or roll back rule sets."
    actor = Actor.of(user=user)
    if identities is None:
        identities = actor_identities(actor)
    if is_same_actor(proposer=_version_author(version), identities=identities):
        return four_eyes_refusal(actor=actor, did=f"wrote version {version.number}", then="publish it")
    return None


def ensure_may_publish_rule_set(
    *, access: TeamAccess, user: User | AnonymousUser, version: RuleSetVersion
) -> None:
    if not access.is_admin:
        raise PermissionDenied(
            "Only team admins can publish or roll back rule sets.", code="publish_not_allowed"
        )
    ensure_four_eyes_for_publish(version=version, actor=Actor.of(user=user))


def ensure_may_decide_policy_draft(*, access: TeamAccess) -> None:
    """Approving a draft publishes a version, so deciding drafts takes a team admin (or staff);
    the service itself refuses the draft's own proposer (four-eyes)."""
    if not access.is_admin:
        raise PermissionDenied(
            "Only team admins can approve or reject policy drafts.", code="draft_decision_not_allowed"
        )


def ensure_may_manage_tool_policies(*, access: TeamAccess) -> None:
    """Creating, replacing, (de)activating or deleting a tool policy changes what agents may do
    at once (no publish step), so it takes a team admin (or staff), as publishing does."""
    if not access.is_admin:
        raise PermissionDenied(
            "Only team admins can create, change or delete tool policies.",
            code="tool_policy_change_not_allowed",
        )
