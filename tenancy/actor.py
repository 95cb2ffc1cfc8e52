"""Who acts: the value every write service takes, and who counts as "the same actor".

An ``Actor`` is a signed-in person, an API key (a team's, or a person's personal key) or a
trusted process (a management command), never two at once, with the name the trail records and
the address the request came from. Services decide from it what it may do (the rules:
``policies.permissions``, ``approvals.services``); views and API views only build it
(``Actor.of_request``) and map the refusal.

``ActorRecord`` is who a stored row says acted (a person's id, a key's id); four-eyes compares it
with whoever acts now through ``actor_identities``: every person and key that actor speaks for.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from django.contrib.auth.models import User
from django.db.models import Q

from tenancy.models import ApiKey
from tenancy.principal import ApiKeyPrincipal

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts now. Build one with ``person``, ``key``, ``process`` or ``of_request``."""

    user: User | None = None
    api_key: ApiKeyPrincipal | None = None
    # A trusted process's name ("seed_demo"): no person, no key, nothing to check.
    process_name: str = ""
    remote_addr: str | None = None

    def __post_init__(self) -> None:
        if (self.user is not None) + (self.api_key is not None) + bool(self.process_name) != 1:
            raise ValueError("an actor is exactly one of a person, an API key or a process")
        if self.user is not None and not self.user.pk:
            raise ValueError("an acting person is a saved, signed-in user")

    @classmethod
    def person(cls, user: User, *, remote_addr: str | None = None) -> Actor:
        return cls(user=user, remote_addr=remote_addr)

    @classmethod
    def key(cls, principal: ApiKeyPrincipal, *, remote_addr: str | None = None) -> Actor:
        return cls(api_key=principal, remote_addr=remote_addr)

    @classmethod
    def process(cls, name: str) -> Actor:
        return cls(process_name=name)

    @classmethod
    def of_request(cls, request: Any) -> Actor:
        """The caller of a request: the API key of an API request (``request.auth``), else the
        signed-in person of a page; with the request's address."""
        remote_addr = request.META.get("REMOTE_ADDR")
        principal = getattr(request, "auth", None)
        if isinstance(principal, ApiKeyPrincipal):
            return cls.key(principal, remote_addr=remote_addr)
        return cls.person(request.user, remote_addr=remote_addr)

    @property
    def name(self) -> str:
        """How the trail names it (a copy: it survives the person's or key's deletion)."""
        if self.user is not None:
            return self.user.get_username()
        if self.api_key is not None:
            return self.api_key.display_name
        return self.process_name

    @property
    def user_id(self) -> int | None:
        """The acting person's id; None for a key, also a personal one (its person is among
        its ``actor_identities``, not the actor)."""
        return self.user.pk if self.user is not None else None

    @property
    def api_key_id(self) -> uuid.UUID | None:
        return self.api_key.key_id if self.api_key is not None else None

    @property
    def record(self) -> ActorRecord:
        """As a row records it (``ActorRecord``)."""
        return ActorRecord(self.user_id, self.api_key_id, self.name)


@dataclass(frozen=True, slots=True)
class ActorRecord:
    """Who a stored row says acted (wrote a version, proposed a draft): a person's id, a key's id,
    or neither (a process), and the name the row copied."""

    user_id: int | None = None
    api_key_id: uuid.UUID | None = None
    name: str = ""


class _HasIds(Protocol):
    @property
    def user_id(self) -> int | None: ...

    @property
    def api_key_id(self) -> uuid.UUID | None: ...


# --- Four-eyes: who is "the same actor" ---------------------------------------------------------

Identities = frozenset[tuple[str, object]]
# The people a key belongs to: a personal key's ``user``, and whoever created it (they held its
# token; for a key minted by a key, the minting key's person, see ``tenancy.services.api_key_create``).
_KEY_PEOPLE = ("user_id", "created_by_id")
# Each round of ``actor_identities`` takes in the people and lineages the keys found so far point
# to. Keys minted through the API copy their lineage and person, so two rounds normally settle
# it; more only when keys join people in ways the services never make (a ``user`` who is not
# the ``created_by``, edited in the database). The bound keeps a request's queries finite.
_MAX_ROUNDS = 8


def actor_identities(actor: _HasIds) -> Identities:
    """Every person and key ``actor`` (an ``Actor`` or ``ActorRecord``) speaks for: one actor for
    four-eyes.

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


def is_same_actor(*, proposer: _HasIds, identities: Identities) -> bool:
    """Whether ``proposer`` is one of the ``identities`` of whoever acts now (``actor_identities``)."""
    mine: set[tuple[str, object]] = set()
    if proposer.user_id is not None:
        mine.add(("user", proposer.user_id))
    if proposer.api_key_id is not None:
        mine.add(("key", proposer.api_key_id))
    return not identities.isdisjoint(mine)


def same_actor(proposer: _HasIds, actor: _HasIds) -> bool:
    """The four-eyes test: the same key, the same person, or a person and a key of theirs."""
    return is_same_actor(proposer=proposer, identities=actor_identities(actor))
