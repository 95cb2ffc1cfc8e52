"""Reads of the live path: who may see which team, where a team's chains stand, and the decision
rows a socket missed; and what one decision's page shows beside the record. Blocking (the ORM): callers on an event loop run them on a thread."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model

from approvals.models import Approval
from audit.models import ChainHead, ChainStream, DecisionRecord
from tenancy.models import ApiKey, Team
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


# --- One decision's page (dashboards/views/decision.py) -----------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionSurroundings:
    """What a decision's page shows beside the record: the key's name, the approval it raised,
    and its neighbours in the team's chain."""

    api_key_name: str | None
    approval: Approval | None
    previous_id: uuid.UUID | None
    next_id: uuid.UUID | None


def _decision_at(team_id: uuid.UUID, sequence: int) -> uuid.UUID | None:
    return (
        DecisionRecord.objects.filter(team_id=team_id, sequence=sequence).values_list("id", flat=True).first()
    )


def decision_surroundings(*, decision: DecisionRecord) -> DecisionSurroundings:
    """Read by id, never trusted to exist: the key may be deleted, the approval's row gone, the
    chain's start archived. The chain is gapless per team, so the neighbours are sequence ± 1
    (one lookup each on the (team, sequence) unique index)."""
    team_id = decision.team_id
    key_name = (
        ApiKey.objects.filter(pk=decision.api_key_id, team_id=team_id).values_list("name", flat=True).first()
        if decision.api_key_id
        else None
    )
    approval = (
        Approval.objects.filter(pk=decision.approval_id, team_id=team_id).first()
        if decision.approval_id
        else None
    )
    return DecisionSurroundings(
        api_key_name=key_name,
        approval=approval,
        previous_id=_decision_at(team_id, decision.sequence - 1) if decision.sequence > 1 else None,
        next_id=_decision_at(team_id, decision.sequence + 1),
    )
