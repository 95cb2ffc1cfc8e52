"""``GET /v1/decisions/export``: the chain as a file an auditor checks with nothing but the SDK's
``compute_chain_hash`` (and an Ed25519 library for the checkpoints), streamed by the real server."""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.utils import timezone
from rest_framework.test import APIClient
from veto.audit.chain import compute_chain_hash

from audit.checkpoints import checkpoints_sign_due, signing_public_key_hex
from audit.export import EXPORT_BATCH
from audit.signing import public_key_hex, sign
from runtime.writer import insert_decisions
from tenancy.models import ApiKey
from tests.factories import TeamFactory, api_key_for, decision_row, record_decision


# --- the README's auditor snippet ("Audit"), the same code --------------------------------------
def verify_export(export: dict, trusted_public_keys: set[str]) -> int:
    """Check an unfiltered JSON export; raises at the first problem, returns the entries checked."""
    prev, hashes = "", {}
    for n, entry in enumerate(export["data"], start=1):
        assert entry["sequence"] == n == entry["record"]["sequence"], f"row missing or moved at {n}"
        assert entry["prev_hash"] == prev, f"broken link at {n}"
        assert compute_chain_hash(prev, entry["record"]) == entry["hash"], f"record changed at {n}"
        prev = hashes[n] = entry["hash"]
    for checkpoint in export["checkpoints"]:
        assert checkpoint["publicKey"] in trusted_public_keys, f"untrusted key {checkpoint['publicKey']}"
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(checkpoint["publicKey"]))
        key.verify(bytes.fromhex(checkpoint["signature"]), checkpoint["payload"].encode())  # or raises
        signed = json.loads(checkpoint["payload"])
        assert hashes.get(signed["sequence"]) == signed["hash"], (
            f"truncated or rewritten at {signed['sequence']}"
        )
    return len(hashes)


# -------------------------------------------------------------------------------------------------


def decisions(team, count: int, **fields: object) -> None:
    """``count`` decisions chained in one write, as the group-committing writer does."""
    now = timezone.now()
    defaults = {"context": {"session_id": "s"}, "created_at": now}
    rows = [
        decision_row(team.id, **{**defaults, "arguments": {"n": n, "big": 1e20, "text": "zoë ✓"}, **fields})
        for n in range(count)
    ]
    insert_decisions(rows, [])


def export(server, key: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/v1/decisions/export", params=params, headers={"X-Veto-API-Key": key}, timeout=60
    )


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
def test_export__json_through_the_live_server__every_entry_and_checkpoint_verifies(asgi_server):
    # Given more entries than one batch, a checkpoint in the middle and entries after it
    team = TeamFactory()
    decisions(team, EXPORT_BATCH + 5)
    checkpoints_sign_due()
    decisions(team, EXPORT_BATCH, decision="deny")
    checkpoints_sign_due()
    record_decision(team, tool_name="last")
    other = TeamFactory()
    decisions(other, 3)

    # When the auditor downloads the export
    response = export(asgi_server, api_key_for(team))

    # Then it is streamed JSON holding the whole chain, which checks out with the SDK alone
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "content-length" not in response.headers  # streamed, not buffered
    assert response.headers["content-disposition"] == f'attachment; filename="decisions-{team.id}.json"'
    body = response.json()
    assert body["publicKey"] == signing_public_key_hex()
    assert [c["sequence"] for c in body["checkpoints"]] == [EXPORT_BATCH + 5, 2 * EXPORT_BATCH + 5]
    assert verify_export(body, {signing_public_key_hex()}) == 2 * EXPORT_BATCH + 6
    assert {e["record"]["team"] for e in body["data"]} == {str(team.id)}
    assert body["data"][0]["record"]["arguments"] == {"n": 0, "big": 1e20, "text": "zoë ✓"}


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
def test_export__auditor_snippet__detects_a_changed_record_a_cut_tail_and_a_foreign_signature(asgi_server):
    # Given a signed, exported chain
    team = TeamFactory()
    decisions(team, 4)
    checkpoints_sign_due()
    body = export(asgi_server, api_key_for(team)).json()
    key = {signing_public_key_hex()}
    assert verify_export(body, key) == 4

    # When a record is edited, the tail is cut, the payload is changed, or the checkpoint comes
    # from a key the auditor does not trust (valid as its signature may be): it fails
    edited = json.loads(json.dumps(body))
    edited["data"][1]["record"]["decision"] = "deny"
    with pytest.raises(AssertionError, match="record changed at 2"):
        verify_export(edited, key)
    cut = {**body, "data": body["data"][:3]}
    with pytest.raises(AssertionError, match="truncated or rewritten at 4"):
        verify_export(cut, key)
    forged_payload = json.loads(json.dumps(body))
    forged_payload["checkpoints"][0]["payload"] = forged_payload["checkpoints"][0]["payload"].replace(
        '"sequence":4', '"sequence":3'
    )
    with pytest.raises(InvalidSignature):
        verify_export(forged_payload, key)
    forger = Ed25519PrivateKey.generate()
    forged_key = json.loads(json.dumps(body))
    forged_key["checkpoints"][0].update(
        signature=sign(forger, body["checkpoints"][0]["payload"]), publicKey=public_key_hex(forger)
    )
    with pytest.raises(AssertionError, match="untrusted key"):
        verify_export(forged_key, key)
    with pytest.raises(AssertionError, match="untrusted key"):
        verify_export(body, {Ed25519PublicKey.from_public_bytes(bytes(32)).public_bytes_raw().hex()})


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
def test_export__csv__header_and_rows_verify_with_the_sdk_function(asgi_server):
    # Given a chain longer than one batch
    team = TeamFactory()
    decisions(team, EXPORT_BATCH + 1, reason='quote " and, comma\nnewline')

    # When exported as CSV
    response = export(asgi_server, api_key_for(team), format="csv")

    # Then each row is a full entry, linked to the one before, hashing with the SDK's function
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["sequence", "record", "prev_hash", "hash", "id", "createdAt"]
    prev = ""
    for n, (sequence, record, prev_hash, digest, decision_id, created_at) in enumerate(rows[1:], start=1):
        assert (int(sequence), prev_hash) == (n, prev)
        assert compute_chain_hash(prev_hash, json.loads(record)) == digest
        assert json.loads(record)["id"] == decision_id and created_at.endswith("Z")
        prev = digest
    assert len(rows) == EXPORT_BATCH + 2
    assert json.loads(rows[1][1])["reason"] == 'quote " and, comma\nnewline'


@pytest.mark.asgi_server
@pytest.mark.django_db(transaction=True)
def test_export__filters__only_matching_full_entries_each_of_which_verifies(asgi_server):
    # Given a chain mixing tools, outcomes and times
    team = TeamFactory()
    long_ago = timezone.now() - timedelta(days=3)
    decisions(team, 3, tool_name="old", created_at=long_ago)
    decisions(team, 4, tool_name="a", decision="deny")
    decisions(team, 5, tool_name="b")
    key = api_key_for(team)

    # When filtered by tool, by outcome, and by date
    by_tool = export(asgi_server, key, toolName="a").json()["data"]
    by_outcome = export(asgi_server, key, decision="allow", format="csv").text
    since = export(asgi_server, key, startDate=(timezone.now() - timedelta(days=1)).isoformat()).json()[
        "data"
    ]

    # Then only matching entries, each a full entry proving itself from its own prev_hash
    assert [e["sequence"] for e in by_tool] == [4, 5, 6, 7]
    assert all(compute_chain_hash(e["prev_hash"], e["record"]) == e["hash"] for e in by_tool)
    assert all(e["record"]["tool"] == "a" for e in by_tool)
    assert [int(r[0]) for r in list(csv.reader(io.StringIO(by_outcome)))[1:]] == [1, 2, 3, 8, 9, 10, 11, 12]
    assert [e["sequence"] for e in since] == list(range(4, 13))


@pytest.fixture
def client():
    team = TeamFactory()
    api = APIClient()
    api.credentials(HTTP_X_VETO_API_KEY=api_key_for(team))
    return api


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("format=xml", "format"),
        ("decision=maybe", "decision"),
        ("startDate=yesterday", "startDate"),
        ("endDate=2026-13-01", "endDate"),
        (f"projectId={uuid.uuid4()}", None),
    ],
)
def test_export__bad_parameter__4xx_json_naming_it(client, query, field):
    response = client.get(f"/v1/decisions/export?{query}")

    if field is None:  # another project's id: not found, as in the list
        assert response.status_code == 404
    else:
        assert response.status_code == 400
        assert field in json.dumps(response.json()["error"])
    assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_export__key_without_decisions_read__403():
    team = TeamFactory()
    api = APIClient()
    api.credentials(HTTP_X_VETO_API_KEY=api_key_for(team, scopes=(ApiKey.Scope.RUNTIME,)))

    assert api.get("/v1/decisions/export").status_code == 403


def test_readme__auditor_snippet__is_the_code_tested_here():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()

    assert inspect.getsource(verify_export) in readme


@pytest.mark.django_db
def test_export_batch__start_date__bracketed_by_sequence_and_the_same_rows():
    # Given a chain with a day-old stretch, then the last hour's rows
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from audit.export import export_entries_batch
    from audit.selectors import DecisionFilters

    team = TeamFactory()
    decisions(team, 3, created_at=timezone.now() - timedelta(days=1))
    decisions(team, 2)

    # When the export reads its first batch from an hour ago
    with CaptureQueriesContext(connection) as captured:
        batch = export_entries_batch(
            team_id=team.id, filters=DecisionFilters(start=timezone.now() - timedelta(hours=1)), after=0
        )

    # Then the same rows, and the batch's scan starts past the day-old ones (a sequence bound, not
    # a walk of the chain from its start: seconds on a 9M-row team)
    assert [entry[0] for entry in batch] == [4, 5]
    read = captured.captured_queries[-1]["sql"]
    assert re.search(r'"sequence" > [1-3]\b', read), read  # (3 rows share one time: any of them)
