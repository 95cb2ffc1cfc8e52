"""The tamper-evident chain, as the SDK defines it (``veto.audit.chain``). Pure: no Django.

Each entry's ``hash`` is ``compute_chain_hash(prev_hash, record)``: SHA-256 of the previous
hash followed by the record's JSON with sorted keys; the first entry's ``prev_hash`` is ``""``.
The record is stored as the exact text that was hashed (``canonical``), not as JSONB:
PostgreSQL's JSONB rewrites numbers (``1e+20`` comes back as ``100000000000000000000``) and the
hash would no longer verify. ``canonical`` is byte-for-byte the SDK's ``sorted_stringify`` for
JSON data (a property test holds it to that), computed by the C JSON encoder.

Anyone can check a chain with nothing but the published SDK::

    from veto.audit.chain import compute_chain_hash
    compute_chain_hash(entry["prev_hash"], json.loads(entry["record"])) == entry["hash"]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = ""

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode


def canonical(record: Mapping[str, Any]) -> str:
    """The record's hashed form: the SDK's ``sorted_stringify``."""
    return _encode(record)


def chain_hash(prev_hash: str, canonical_record: str) -> str:
    """``veto.audit.chain.compute_chain_hash`` over an already canonical record."""
    return hashlib.sha256((prev_hash + canonical_record).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One stored entry as the verifier reads it."""

    sequence: int
    record: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    count: int
    head_sequence: int | None
    head_hash: str
    # Where and why the chain first breaks (None when it holds).
    broken_at: int | None = None
    problem: str | None = None


def verify_links(
    links: Iterable[ChainLink], *, expected_prev_hash: str = GENESIS_HASH, expected_sequence: int = 1
) -> Verification:
    """Check entries in sequence order; stop at the first break and say why.

    * ``row missing``: a sequence number is skipped;
    * ``record changed``: the record no longer hashes to the stored hash;
    * ``order changed``: the record says it is another sequence than the row it sits in;
    * ``hash mismatch``: the entry's ``prev_hash`` is not the previous entry's hash.
    """
    count = 0
    prev_hash = expected_prev_hash
    sequence = expected_sequence
    last: ChainLink | None = None

    def broken(where: int, problem: str) -> Verification:
        head_sequence = last.sequence if last is not None else None
        head_hash = last.hash if last is not None else expected_prev_hash
        return Verification(False, count, head_sequence, head_hash, where, problem)

    for link in links:
        if link.sequence > sequence:
            return broken(link.sequence, f"row missing: expected sequence {sequence}, found {link.sequence}")
        if link.sequence < sequence:
            return broken(
                link.sequence, f"order changed: sequence {link.sequence} appears after {sequence - 1}"
            )
        if chain_hash(link.prev_hash, link.record) != link.hash:
            return broken(link.sequence, "record changed: the record does not hash to the stored hash")
        recorded_sequence = _recorded_sequence(link.record)
        if recorded_sequence != link.sequence:
            return broken(
                link.sequence,
                f"order changed: the record at sequence {link.sequence} was written as sequence {recorded_sequence}",
            )
        if link.prev_hash != prev_hash:
            return broken(link.sequence, "hash mismatch: prev_hash is not the previous entry's hash")
        prev_hash = link.hash
        sequence += 1
        count += 1
        last = link
    if last is None:
        return Verification(True, 0, None, expected_prev_hash)
    return Verification(True, count, last.sequence, last.hash)


def _recorded_sequence(record: str) -> Any:
    try:
        return json.loads(record).get("sequence")
    except (ValueError, AttributeError):
        return None


def decision_record(row: Mapping[str, Any], sequence: int) -> dict[str, Any]:
    """What a decision's chain entry attests (README, "Audit"): the call, the decision, why,
    under which policy version, and when. ``row`` is a decision row (``runtime.writer.DecisionRow``)."""
    return {"sequence": sequence, **_decision_fields(row)}


def _decision_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    created_at = row["created_at"]
    approval_id = row.get("approval_id")
    fields = {
        "id": str(row["id"]),
        "team": str(row["team_id"]),
        "time": created_at.isoformat().replace("+00:00", "Z"),
        "tool": row["tool_name"],
        "arguments": row["arguments"],
        "context": row["context"],
        "decision": row["decision"],
        "enforcement": row.get("enforcement", "strict"),
        "rule_id": row.get("rule_id") or None,
        "reason": row.get("reason") or None,
        "source": row["source"],
        "policy_version": row.get("rule_set_version"),
        "approval_id": str(approval_id) if approval_id else None,
    }
    # Rules sent inline (source inline_rules) decided: the record names them by hash. Other
    # records keep the shape they always had.
    if row.get("rules_hash"):
        fields["rules_hash"] = row["rules_hash"]
    # A language model had a say (a mode llm policy's exceptions): the record attests that, and
    # its verdict. Other records keep the shape they always had.
    if row.get("metadata"):
        fields["mode"] = row.get("mode", "deterministic")
        fields["metadata"] = row["metadata"]
    return fields


@dataclass(frozen=True, slots=True)
class RecordParts:
    """A decision's canonical record cut around its sequence number: ``before + str(sequence) +
    after`` is ``canonical(decision_record(row, sequence))``. The text can then be made before
    the sequence is known, and finished where it is (inside PostgreSQL, under the head's lock:
    ``audit_link_decisions`` in migration 0005)."""

    before: str
    after: str

    def with_sequence(self, sequence: int) -> str:
        return f"{self.before}{sequence}{self.after}"


def decision_record_parts(row: Mapping[str, Any]) -> RecordParts:
    """``RecordParts`` of a decision row. The record's keys sort around ``"sequence"`` (there are
    keys on both sides), so the two halves are the canonical texts of those two key sets, joined
    as ``sort_keys`` would join them."""
    fields = _decision_fields(row)
    below = canonical({k: v for k, v in fields.items() if k < "sequence"})
    above = canonical({k: v for k, v in fields.items() if k > "sequence"})
    return RecordParts(f'{below[:-1]},"sequence":', f",{above[1:]}")


@dataclass(frozen=True, slots=True)
class Head:
    sequence: int
    hash: str


def link_rows(rows: Iterable[dict[str, Any]], heads: dict[Any, Head]) -> dict[Any, Head]:
    """Give each decision row, in order, the next place in its team's chain (sets ``sequence``,
    ``record``, ``prev_hash``, ``hash`` on the row); returns the new heads of the teams touched."""
    new_heads = dict(heads)
    for row in rows:
        head = new_heads[row["team_id"]]
        sequence = head.sequence + 1
        text = decision_record_parts(row).with_sequence(sequence)
        digest = chain_hash(head.hash, text)
        row["sequence"], row["record"], row["prev_hash"], row["hash"] = sequence, text, head.hash, digest
        new_heads[row["team_id"]] = Head(sequence, digest)
    return {team: head for team, head in new_heads.items() if heads.get(team) != head}
