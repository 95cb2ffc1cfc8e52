"""The team's governance trail: approval actions and rule-set publishes, chained like decisions
(same ``audit.chain`` functions) in their own stream, so ``verify_audit --stream events`` and
an auditor with the SDK can prove nobody edited or dropped one.

Appended inside the caller's transaction: the entry commits exactly when the action does, and
is announced (common.events) once it has: every entry is one event at its sequence.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.chain import canonical, chain_hash
from audit.events import trail_event
from audit.models import AuditEvent, ChainHead, ChainStream
from common.events import publish_many


@dataclass(frozen=True, slots=True)
class TrailEntry:
    """One governance event to chain: who (``actor_name``) did what (``kind`` and ``details``),
    when, and from where."""

    kind: str
    actor_name: str
    details: dict[str, Any]
    remote_addr: str | None = None
    now: datetime | None = None


def audit_event_append(
    *,
    team_id: uuid.UUID,
    kind: str,
    actor_name: str,
    details: dict[str, Any],
    remote_addr: str | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Chain one governance event for ``team_id``: who (``actor_name``) did what (``kind`` and
    ``details``), when, and from where."""
    entry = TrailEntry(kind=kind, actor_name=actor_name, details=details, remote_addr=remote_addr, now=now)
    return audit_events_append(team_id=team_id, entries=[entry])[0]


def audit_events_append(*, team_id: uuid.UUID, entries: Sequence[TrailEntry]) -> list[AuditEvent]:
    """Chain ``entries`` for ``team_id``, in order, at consecutive sequences: the head is locked
    and moved once, the rows are one insert, and their events are announced in that order after
    the commit (one event per entry, as ``audit_event_append`` one by one would)."""
    if not entries:
        return []
    fallback = timezone.now()
    with transaction.atomic():
        ChainHead.objects.get_or_create(team_id=team_id, stream=ChainStream.EVENTS)
        # The head's row lock orders this team's events across processes.
        head = ChainHead.objects.select_for_update().get(team_id=team_id, stream=ChainStream.EVENTS)
        sequence, prev_hash = head.sequence, head.hash
        rows: list[AuditEvent] = []
        events = []
        for entry in entries:
            now = entry.now or fallback
            sequence += 1
            record = {
                "sequence": sequence,
                "team": str(team_id),
                "time": now.isoformat().replace("+00:00", "Z"),
                "kind": entry.kind,
                "actor": entry.actor_name,
                "from": entry.remote_addr,
                "details": entry.details,
            }
            text = canonical(record)
            digest = chain_hash(prev_hash, text)
            rows.append(
                AuditEvent(
                    team_id=team_id,
                    kind=entry.kind,
                    actor_name=entry.actor_name,
                    created_at=now,
                    sequence=sequence,
                    record=text,
                    prev_hash=prev_hash,
                    hash=digest,
                )
            )
            events.append(
                trail_event(
                    team_id=team_id,
                    sequence=sequence,
                    kind=entry.kind,
                    details=entry.details,
                    occurred_at=now,
                )
            )
            prev_hash = digest
        AuditEvent.objects.bulk_create(rows)
        ChainHead.objects.filter(pk=head.pk).update(sequence=sequence, hash=prev_hash)
        publish_many(events)
    return rows
