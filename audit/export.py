"""The decision chain as a file an auditor can check offline (``GET /v1/decisions/export``).

Streamed in constant memory: keyset batches by sequence, each read on a worker thread, yielded
as bytes from an async generator (Django under ASGI buffers a *sync* iterator whole).

Every exported row is a full chain entry (``sequence``, the ``record`` exactly as hashed,
``prev_hash``, ``hash``), filters or not, so each entry proves itself with the SDK's
``compute_chain_hash(prev_hash, record) == hash``. A filtered export proves each entry it holds
but not that nothing is missing around them; an unfiltered one proves the whole chain, linked
from ``prev_hash == ""``, and the signed checkpoints (``checkpoints``, by ``publicKey``) prove
its tail was not cut or rewritten.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from audit.checkpoints import checkpoint_output, signing_public_key_hex
from audit.models import ChainStream, Checkpoint
from audit.selectors import DecisionFilters, decisions_of_team_in_sequence
from common.api import iso
from common.database import run_in_db_thread

EXPORT_BATCH = 2000
COLUMNS = ("sequence", "record", "prev_hash", "hash", "id", "createdAt")

Entry = tuple[int, str, str, str, uuid.UUID, datetime]


def export_entries_batch(*, team_id: uuid.UUID, filters: DecisionFilters, after: int) -> list[Entry]:
    """The next ``EXPORT_BATCH`` chain entries of the team's decisions matching ``filters``, in
    sequence order, after sequence ``after`` (keyset: the ``(team, sequence)`` unique index; a
    time range bracketed by sequence, ``decisions_of_team_in_sequence``)."""
    return list(
        decisions_of_team_in_sequence(team_id=team_id, filters=filters)
        .filter(sequence__gt=after)
        .order_by("sequence")
        .values_list("sequence", "record", "prev_hash", "hash", "id", "created_at")[:EXPORT_BATCH]
    )


def export_checkpoints_batch(*, team_id: uuid.UUID, after_id: int) -> list[Checkpoint]:
    return list(
        Checkpoint.objects.filter(team_id=team_id, stream=ChainStream.DECISIONS, id__gt=after_id).order_by(
            "id"
        )[:EXPORT_BATCH]
    )


async def _entries(team_id: uuid.UUID, filters: DecisionFilters) -> AsyncIterator[list[Entry]]:
    after = 0
    while True:
        batch = await run_in_db_thread(export_entries_batch, team_id=team_id, filters=filters, after=after)
        if batch:
            yield batch
        if len(batch) < EXPORT_BATCH:
            return
        after = batch[-1][0]


def _json_entry(entry: Entry) -> str:
    sequence, record, prev_hash, digest, decision_id, created_at = entry
    # ``record`` is stored as canonical JSON text: it goes in as it is, a JSON object, byte for
    # byte what was hashed (json.loads of it gives the SDK's record back).
    return (
        f'{{"sequence":{sequence},"record":{record},"prev_hash":{json.dumps(prev_hash)},'
        f'"hash":{json.dumps(digest)},"id":"{decision_id}","createdAt":"{iso(created_at)}"}}'
    )


async def export_json(*, team_id: uuid.UUID, filters: DecisionFilters) -> AsyncIterator[bytes]:
    """``{"data": [entries], "checkpoints": [...], "publicKey": hex}``, as bytes, batch by batch."""
    yield b'{"data":['
    first = True
    async for batch in _entries(team_id, filters):
        text = ",".join(_json_entry(entry) for entry in batch)
        yield (text if first else "," + text).encode()
        first = False
    yield b'],"checkpoints":['
    first = True
    after_id = 0
    while True:
        checkpoints = await run_in_db_thread(export_checkpoints_batch, team_id=team_id, after_id=after_id)
        if checkpoints:
            text = ",".join(json.dumps(checkpoint_output(c), separators=(",", ":")) for c in checkpoints)
            yield (text if first else "," + text).encode()
            first = False
        if len(checkpoints) < EXPORT_BATCH:
            break
        after_id = checkpoints[-1].id
    public_key = await run_in_db_thread(signing_public_key_hex)
    yield f'],"publicKey":"{public_key}"}}'.encode()


async def export_csv(*, team_id: uuid.UUID, filters: DecisionFilters) -> AsyncIterator[bytes]:
    """A header row, then one row per entry; ``record`` is the hashed JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    yield _drain(buffer)
    async for batch in _entries(team_id, filters):
        writer.writerows(
            (sequence, record, prev_hash, digest, str(decision_id), iso(created_at))
            for sequence, record, prev_hash, digest, decision_id, created_at in batch
        )
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


FORMATS: dict[str, tuple[Callable[..., AsyncIterator[bytes]], str]] = {
    "json": (export_json, "application/json"),
    "csv": (export_csv, "text/csv; charset=utf-8"),
}


def decisions_export(
    *, team_id: uuid.UUID, filters: DecisionFilters, format: str
) -> tuple[AsyncIterator[bytes], str]:
    """The export's byte stream and content type."""
    generate, content_type = FORMATS[format]
    stream: Any = generate(team_id=team_id, filters=filters)
    return stream, content_type
