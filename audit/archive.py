"""Retention without losing the proof: move the start of a team's chain to a file.

The archive file holds the entries exactly as exported (each verifiable with the SDK's
``compute_chain_hash``); the database keeps a ``ChainArchive`` anchor (the last archived hash and
the file's SHA-256) so the remaining chain still verifies from that hash. Rows leave through this
path only: the append-only trigger is bypassed for this one transaction with
``SET LOCAL session_replication_role = replica``, which PostgreSQL allows only to a superuser
(run it as the database owner's admin role, never as the web app's role).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from django.db import connection, transaction

from audit.chain import verify_links
from audit.models import ChainArchive
from audit.selectors import chain_anchor, chain_links, chain_model
from common.errors import Conflict, InvalidInput


def chain_archive(*, team_id: uuid.UUID, stream: str, through: int, path: Path) -> ChainArchive:
    """Write the chain's entries up to ``through`` to ``path`` and remove them, after checking
    that they verify; returns the anchor left in their place."""
    since, expected_prev = chain_anchor(team_id=team_id, stream=stream)
    if through < since:
        raise InvalidInput(f"entries up to {through} are already archived (the chain starts at {since})")
    links = [
        link for link in chain_links(team_id=team_id, stream=stream, since=since) if link.sequence <= through
    ]
    check = verify_links(links, expected_prev_hash=expected_prev, expected_sequence=since)
    if not check.ok:
        raise Conflict(f"refusing to archive a broken chain: sequence {check.broken_at}: {check.problem}")
    if not links or links[-1].sequence != through:
        raise InvalidInput(f"sequence {through} is not in the chain")
    with path.open("w", encoding="utf-8") as out:
        out.write(
            json.dumps({"team": str(team_id), "stream": stream, "startsAfterHash": expected_prev}) + "\n"
        )
        for link in links:
            entry = {
                "sequence": link.sequence,
                "record": json.loads(link.record),
                "prev_hash": link.prev_hash,
                "hash": link.hash,
            }
            out.write(json.dumps(entry, separators=(",", ":")) + "\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with transaction.atomic():
        anchor = ChainArchive.objects.create(
            team_id=team_id,
            stream=stream,
            through_sequence=through,
            through_hash=links[-1].hash,
            location=str(path),
            file_sha256=digest,
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = replica")
        chain_model(stream).objects.filter(team_id=team_id, sequence__lte=through).delete()
    return anchor
