"""Signed checkpoints: every so often (Celery beat), each chain whose head moved gets a signed
statement of its head. With them an auditor detects what the hash links alone cannot: a
truncated tail, or a chain rewritten from some entry on with fresh hashes.

The signed payload is ``canonical({"team", "stream", "sequence", "hash", "signed_at"})``
(``audit.chain.canonical``); the signature is Ed25519 by the key in
``settings.AUDIT_SIGNING_KEY_FILE``, which lives outside the database.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.utils import timezone

from audit.chain import canonical
from audit.models import ChainHead, Checkpoint
from audit.selectors import chain_anchor, chain_entry_hash, chain_model
from audit.signing import load_or_create_signing_key, public_key_hex, sign, verify_checkpoint
from common.api import iso

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _key_at(path: Path, version: tuple[int, int]) -> Ed25519PrivateKey:
    return load_or_create_signing_key(path)


def signing_key() -> Ed25519PrivateKey:
    """This installation's checkpoint key: read once per process, and again when the file is
    replaced (``rotate_audit_key``), so no process goes on signing with a retired key."""
    path = Path(settings.AUDIT_SIGNING_KEY_FILE)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return _key_at(path, (0, 0))  # created now; the next call sees the file
    return _key_at(path, (stat.st_ino, stat.st_mtime_ns))


def signing_public_key_hex() -> str:
    return public_key_hex(signing_key())


def trusted_public_keys() -> frozenset[str]:
    """The keys whose checkpoints this installation accepts: its signing key, and the earlier
    ones it was rotated from (``settings.AUDIT_RETIRED_PUBLIC_KEYS``)."""
    return frozenset((signing_public_key_hex(), *settings.AUDIT_RETIRED_PUBLIC_KEYS))


def checkpoint_payload(
    *, team_id: uuid.UUID, stream: str, sequence: int, hash: str, signed_at: datetime
) -> str:
    return canonical(
        {
            "team": str(team_id),
            "stream": stream,
            "sequence": sequence,
            "hash": hash,
            "signed_at": iso(signed_at),
        }
    )


def _signed_by(public_key: str) -> QuerySet[Checkpoint]:
    """Checkpoints by ``public_key`` of the outer query's head, at its sequence."""
    return Checkpoint.objects.filter(
        team_id=OuterRef("team_id"),
        stream=OuterRef("stream"),
        sequence=OuterRef("sequence"),
        public_key=public_key,
    )


def checkpoints_sign_due(*, now: datetime | None = None) -> list[Checkpoint]:
    """Sign the head of every chain (team and stream) that this installation's current key has not
    signed at its sequence: heads that moved, and after a key rotation every head once.

    Idempotent: a head already signed is skipped, and each head is locked while it is signed, so
    two runs at once sign it once."""
    key = signing_key()
    public_key = public_key_hex(key)
    due = list(
        ChainHead.objects.filter(sequence__gt=0)
        .exclude(Exists(_signed_by(public_key)))
        .values_list("team_id", "stream")
    )
    signed = []
    for team_id, stream in due:
        checkpoint = _sign_head(team_id=team_id, stream=stream, key=key, public_key=public_key, now=now)
        if checkpoint is not None:
            signed.append(checkpoint)
    return signed


def _sign_head(
    *, team_id: uuid.UUID, stream: str, key: Ed25519PrivateKey, public_key: str, now: datetime | None
) -> Checkpoint | None:
    with transaction.atomic():
        # The head's row lock: a concurrent run waits here, then finds the checkpoint made.
        head = ChainHead.objects.select_for_update().get(team_id=team_id, stream=stream)
        signed = Checkpoint.objects.filter(
            team_id=team_id, stream=stream, sequence=head.sequence, public_key=public_key
        ).exists()
        if head.sequence == 0 or signed:
            return None
        signed_at = now or timezone.now()
        payload = checkpoint_payload(
            team_id=team_id, stream=stream, sequence=head.sequence, hash=head.hash, signed_at=signed_at
        )
        checkpoint = Checkpoint.objects.create(
            team_id=team_id,
            stream=stream,
            sequence=head.sequence,
            hash=head.hash,
            signed_at=signed_at,
            payload=payload,
            signature=sign(key, payload),
            public_key=public_key,
        )
    logger.info("audit_checkpoint.signed team=%s stream=%s sequence=%d", team_id, stream, head.sequence)
    return checkpoint


def checkpoint_output(checkpoint: Checkpoint) -> dict[str, object]:
    """A checkpoint as exports carry it: verify ``signature`` over ``payload``."""
    return {
        "team": str(checkpoint.team_id),
        "stream": checkpoint.stream,
        "sequence": checkpoint.sequence,
        "hash": checkpoint.hash,
        "signedAt": iso(checkpoint.signed_at),
        "payload": checkpoint.payload,
        "signature": checkpoint.signature,
        "publicKey": checkpoint.public_key,
    }


def checkpoint_problem(*, team_id: uuid.UUID, stream: str) -> tuple[int, str] | None:
    """Where and what is wrong between the team's chain and its latest checkpoint, or None when
    they agree (or there is no checkpoint yet)."""
    # The newest at the highest sequence: after a rotation a head carries the new key's too.
    checkpoint = (
        Checkpoint.objects.filter(team_id=team_id, stream=stream).order_by("-sequence", "-id").first()
    )
    if checkpoint is None:
        return None
    at, where = checkpoint.sequence, f"checkpoint at sequence {checkpoint.sequence}"
    # Trust only this installation's keys: a rewritten database could carry a key of its own.
    if checkpoint.public_key not in trusted_public_keys() or not verify_checkpoint(
        checkpoint.payload, checkpoint.signature, checkpoint.public_key
    ):
        return at, f"{where}: bad signature (not signed by this installation's keys over its payload)"
    try:
        signed = json.loads(checkpoint.payload)
    except ValueError:
        return at, f"{where}: unreadable payload"
    if signed.get("team") != str(team_id) or signed.get("stream") != stream:
        return at, f"{where}: signed for another chain"
    sequence, digest = signed.get("sequence"), signed.get("hash")
    first, anchor_hash = chain_anchor(team_id=team_id, stream=stream)
    if sequence < first - 1:
        return None  # archived (archive_audit): the archive file proves that entry
    if sequence == first - 1:
        stored: str | None = anchor_hash
    else:
        stored = chain_entry_hash(team_id=team_id, stream=stream, sequence=sequence)
    if stored is None:
        length = (
            chain_model(stream).objects.filter(team_id=team_id).aggregate(last=Max("sequence"))["last"]
            or first - 1
        )
        if length < sequence:
            return (
                at,
                f"truncated: the chain ends at sequence {length}, the {where} was signed over {sequence} entries",
            )
        return at, f"row missing: the entry at the {where} is gone"
    if stored != digest:
        return at, f"rewritten: the entry at the {where} has another hash than the one signed"
    return None
