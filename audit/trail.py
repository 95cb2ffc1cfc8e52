"""The team's governance trail: approval actions and rule-set publishes, chained like decisions
(same ``audit.chain`` functions) in their own stream, so ``verify_audit --stream events`` and
an auditor with the SDK can prove nobody edited or dropped one.

Appended inside the caller's transaction: the entry commits exactly when the action does, and
is announced (common.events) once it has: every entry is one event at its sequence.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.chain import canonical, chain_hash
from audit.events import trail_event
from audit.models import AuditEvent, ChainHead, ChainStream
from common.events import publish


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
    now = now or timezone.now()
    with transaction.atomic():
        ChainHead.objects.get_or_create(team_id=team_id, stream=ChainStream.EVENTS)
        # The head's row lock orders this team's events across processes.
        head = ChainHead.objects.select_for_update().get(team_id=team_id, stream=ChainStream.EVENTS)
        sequence = head.sequence + 1
        record = {
            "sequence": sequence,
            "team": str(team_id),
            "time": now.isoformat().replace("+00:00", "Z"),
            "kind": kind,
            "actor": actor_name,
            "from": remote_addr,
            "details": details,
        }
        text = canonical(record)
        digest = chain_hash(head.hash, text)
        event = AuditEvent.objects.create(
            team_id=team_id,
            kind=kind,
            actor_name=actor_name,
            created_at=now,
            sequence=sequence,
            record=text,
            prev_hash=head.hash,
            hash=digest,
        )
        ChainHead.objects.filter(pk=head.pk).update(sequence=sequence, hash=digest)
        publish(trail_event(team_id=team_id, sequence=sequence, kind=kind, details=details, occurred_at=now))
    return event
