"""The chain's pure parts: our canonical form is the SDK's, and the verifier names each break."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from veto.audit.chain import compute_chain_hash, sorted_stringify

from audit.chain import (
    ChainLink,
    Head,
    canonical,
    chain_hash,
    decision_record,
    decision_record_parts,
    link_rows,
    verify_links,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500)
@given(record=st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical__any_json_record__is_the_sdks_sorted_stringify_and_hashes_alike(record):
    assert canonical(record) == sorted_stringify(record)
    assert chain_hash("prev", canonical(record)) == compute_chain_hash("prev", record)
    # And it survives a round trip through its own text (what verifiers and exports read)
    assert chain_hash("prev", canonical(record)) == compute_chain_hash("prev", json.loads(canonical(record)))


decision_rows = st.fixed_dictionaries(
    {
        "id": st.uuids(),
        "team_id": st.uuids(),
        "tool_name": st.text(),
        "arguments": st.dictionaries(st.text(), json_values, max_size=4),
        "context": st.dictionaries(st.text(), json_values, max_size=4),
        "decision": st.sampled_from(["allow", "deny", "require_approval"]),
        "source": st.sampled_from(["server", "client"]),
        "created_at": st.datetimes(timezones=st.just(UTC)),
    },
    optional={
        "rule_id": st.text(),
        "reason": st.text(),
        "rule_set_version": st.none() | st.integers(min_value=1),
        "approval_id": st.none() | st.uuids(),
        "enforcement": st.sampled_from(["strict", "log", "shadow"]),
    },
)


@settings(max_examples=300)
@given(row=decision_rows, sequence=st.integers(min_value=1, max_value=2**62))
def test_record_parts__joined_around_any_sequence__are_the_whole_records_canonical_text(row, sequence):
    # What PostgreSQL finishes under the head lock must be exactly what the SDK would hash:
    # keys nested in arguments named "sequence" included.
    row["arguments"]["sequence"] = {"sequence": 0}
    whole = decision_record(row, sequence)
    assert decision_record_parts(row).with_sequence(sequence) == canonical(whole) == sorted_stringify(whole)


def _chain(count: int) -> list[ChainLink]:
    team = "t"
    rows = [
        {
            "id": f"id-{i}",
            "team_id": team,
            "tool_name": "export",
            "arguments": {"n": i, "big": 1e20},
            "context": {},
            "decision": "allow",
            "source": "server",
            "created_at": datetime(2026, 11, 22, tzinfo=UTC),
        }
        for i in range(count)
    ]
    link_rows(rows, {team: Head(0, "")})
    return [ChainLink(r["sequence"], r["record"], r["prev_hash"], r["hash"]) for r in rows]


def test_link_rows__each_entry_verifies_with_the_sdk_function():
    links = _chain(3)
    prev = ""
    for link in links:
        assert compute_chain_hash(prev, json.loads(link.record)) == link.hash
        prev = link.hash
    assert verify_links(links).ok and verify_links(links).head_hash == links[-1].hash


def test_verify__each_kind_of_tampering__is_named_at_its_sequence():
    links = _chain(5)
    edited = links.copy()
    edited[2] = ChainLink(
        3, edited[2].record.replace('"allow"', '"deny"'), edited[2].prev_hash, edited[2].hash
    )
    missing = links[:2] + links[3:]
    swapped = links.copy()
    swapped[1], swapped[2] = (
        ChainLink(2, links[2].record, links[2].prev_hash, links[2].hash),
        ChainLink(3, links[1].record, links[1].prev_hash, links[1].hash),
    )
    rehashed = links.copy()
    rehashed[3] = ChainLink(4, links[3].record, "0" * 64, chain_hash("0" * 64, links[3].record))

    results = {
        name: verify_links(chain)
        for name, chain in [
            ("edited", edited),
            ("missing", missing),
            ("swapped", swapped),
            ("rehashed", rehashed),
        ]
    }

    assert (results["edited"].broken_at, results["edited"].problem.split(":")[0]) == (3, "record changed")
    assert (results["missing"].broken_at, results["missing"].problem.split(":")[0]) == (4, "row missing")
    assert (results["swapped"].broken_at, results["swapped"].problem.split(":")[0]) == (2, "order changed")
    assert (results["rehashed"].broken_at, results["rehashed"].problem.split(":")[0]) == (4, "hash mismatch")
    assert results["edited"].count == 2 and results["edited"].head_sequence == 2
