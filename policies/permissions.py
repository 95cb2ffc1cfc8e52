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
from django.db.models import Q

from common.errors import PermissionDenied
from policies.models import RuleSetVersion
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
    key, or both (a key acting for a person)."""

    user_id: int | None = None
    api_key_id: uuid.UUID | None = None

    @classmethod
    def of(cls, *, user: User | AnonymousUser | None = None, api_key_id: uuid.UUID | None = None) -> Actor:
        return cls(user.pk if user is not None and user.pk else None, api_key_id)


Identities = frozenset[tuple[str, object]]
# The people a key belongs to: a personal key's ``user``, and whoever created it (they held its
# token; for a key minted by a key, the minting key's person, see ``tenancy.services.api_key_create``).
_KEY_PEOPLE = ("user_id", "created_by_id")
# Each round of ``actor_identities`` takes in the people and lineages the keys found so far point
# to. Keys minted through the API copy their lineage and person, so two rounds normally settle
# it; more only when keys join people in ways the services never make (a ``user`` who is not
# the ``created_by``, edited in the database). The bound keeps a request's queries finite.
_MAX_ROUNDS = 8


def actor_identities(actor: Actor) -> Identities:
    """Every person and key ``actor`` speaks for: one actor for four-eyes.

    Its person; its key; the key's people (a personal key's ``user``, and whoever created the
    key); every key of its lineage (``ApiKey.lineage``: the key that minted it, the one that
    minted that, ..., and every key any of them minted, however deep: whoever held one of them
    could mint the others); and, for each person found, every key of theirs and every lineage
    those keys belong to, until nothing new turns up (``_MAX_ROUNDS``). Cycle safe (sets, and a
    lineage is a label copied at creation, never a chain to walk). A query per round, two to
    three in practice; compute it once per request and compare many."""
    people: set[int] = {actor.user_id} if actor.user_id is not None else set()
    keys: set[uuid.UUID] = {actor.api_key_id} if actor.api_key_id is not None else set()
    lineages: set[uuid.UUID] = set()
    # What the last round asked about: a round queries only the people, keys and lineages new since.
    asked_people: set[int] = set()
    asked_keys: set[uuid.UUID] = set()
    asked_lineages: set[uuid.UUID] = set()
    for _ in range(_MAX_ROUNDS):
        new_people = people - asked_people
        new_keys = keys - asked_keys
        new_lineages = lineages - asked_lineages
        if not (new_people or new_keys or new_lineages):
            break
        asked_people |= new_people
        asked_keys |= new_keys
        asked_lineages |= new_lineages
        related = Q(pk__in=new_keys) | Q(pk__in=new_lineages) | Q(lineage_root__in=new_lineages)
        for field in _KEY_PEOPLE:
            related |= Q(**{f"{field}__in": new_people})
        rows = ApiKey.objects.filter(related).values_list("id", "lineage_root", *_KEY_PEOPLE)
        for key_id, lineage_root, *persons in rows:
            keys.add(key_id)
            lineages.add(lineage_root if lineage_root is not None else key_id)
            people.update(person for person in persons if person is not None)
    else:
        logger.warning(
            "policy.actor_identities_bounded user=%s api_key=%s keys=%d people=%d",
            actor.user_id,
            actor.api_key_id,
            len(keys),
            len(people),
        )
    return frozenset({("user", p) for p in people} | {("key", k) for k in keys})


def is_same_actor(*, proposer: Actor, identities: Identities) -> bool:
    """Whether ``proposer`` is one of the ``identities`` of whoever acts now (``actor_identities``)."""
    mine: set[tuple[str, object]] = set()
    if proposer.user_id is not None:
        mine.add(("user", proposer.user_id))
    if proposer.api_key_id is not None:
        mine.add(("key", proposer.api_key_id))
    return not identities.isdisjoint(mine)


def same_actor(proposer: Actor, actor: Actor) -> bool:
    """The four-eyes test: the same key, the same person, or a person and a key of theirs."""
    return is_same_actor(proposer=proposer, identities=actor_identities(actor))


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
