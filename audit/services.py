"""Writes for the decision record: verifying a chain. (Rows are written by runtime/writer.py.)"""

from __future__ import annotations

import time
import uuid

from audit.chain import verify_links
from audit.checkpoints import checkpoint_problem
from audit.models import ChainStream, Verification
from audit.selectors import chain_anchor, chain_entry_hash, chain_links


def chain_verify(*, team_id: uuid.UUID, stream: str = ChainStream.DECISIONS, since: int = 1) -> Verification:
    """Check the team's chain (from ``since``; the entry before it anchors the check) and record
    the run, so the audit page can show the last one."""
    started = time.perf_counter()
    first, anchor_hash = chain_anchor(team_id=team_id, stream=stream)
    if since <= first:
        since, expected_prev = first, anchor_hash  # archived entries are proven by their file
    else:
        expected_prev = chain_entry_hash(team_id=team_id, stream=stream, sequence=since - 1) or ""
    result = verify_links(
        chain_links(team_id=team_id, stream=stream, since=since),
        expected_prev_hash=expected_prev,
        expected_sequence=since,
    )
    # The links cannot show a cut tail or a chain rewritten with fresh hashes; the latest signed
    # checkpoint can.
    checkpoint = checkpoint_problem(team_id=team_id, stream=stream) if result.ok else None
    return Verification.objects.create(
        team_id=team_id,
        stream=stream,
        ok=result.ok and checkpoint is None,
        count=result.count,
        head_sequence=result.head_sequence,
        head_hash=result.head_hash,
        broken_at=result.broken_at if checkpoint is None else checkpoint[0],
        problem=result.problem or (checkpoint[1] if checkpoint else ""),
        seconds=time.perf_counter() - started,
    )
