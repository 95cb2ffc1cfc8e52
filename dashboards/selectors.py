"""Reads of the live path: who may see which team, where a team's chains stand, and the decision
rows a socket missed. Blocking (the ORM): callers on an event loop run them on a thread."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model

from audit.models import ChainHead, ChainStream, DecisionRecord
from tenancy.models import Team
from tenancy.selectors import teams_visible_to

# Live rows never need the chain columns (the record text can be large).
_ROW_DEFERRED = ("record", "prev_hash", "hash")


def visible_teams_of(*, user_id: int, session_key: str | None = None) -> dict[str, uuid.UUID]:
    """The teams (slug -> id) the person may watch now: none once they are deactivated, or, with
    ``session_key``, once that session ended (logged out elsewhere, expired, flushed)."""
    if session_key is not None and not import_module(settings.SESSION_ENGINE).SessionStore().exists(
        session_key
    ):
        return {}
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return {}
    return dict(teams_visible_to(user=user).values_list("slug", "id"))


def chain_heads_of(*, team_id: uuid.UUID) -> tuple[int | None, int | None]:
    """The last sequence of the team's decisions and events chains (None: nothing yet)."""
    heads = dict(ChainHead.objects.filter(team_id=team_id).values_list("stream", "sequence"))
    return heads.get(ChainStream.DECISIONS.value), heads.get(ChainStream.EVENTS.value)


def decisions_by_id(*, decision_ids: Sequence[uuid.UUID | str]) -> list[DecisionRecord]:
    return list(
        DecisionRecord.objects.filter(id__in=list(decision_ids)).defer(*_ROW_DEFERRED).order_by("sequence")
    )


def decisions_after(
    *, team_id: uuid.UUID, after: int, upto: int | None, limit: int
) -> tuple[list[DecisionRecord], bool]:
    """The team's decisions with ``after < sequence <= upto``, oldest first; at most the newest
    ``limit`` of them, and whether that is all of them."""
    queryset = DecisionRecord.objects.filter(team_id=team_id, sequence__gt=after)
    if upto is not None:
        queryset = queryset.filter(sequence__lte=upto)
    newest = list(queryset.defer(*_ROW_DEFERRED).order_by("-sequence")[: limit + 1])
    complete = len(newest) <= limit
    return list(reversed(newest[:limit])), complete


def team_slugs_of(*, team_ids: set[uuid.UUID]) -> dict[object, str]:
    return dict(Team.objects.filter(id__in=team_ids).values_list("id", "slug"))
