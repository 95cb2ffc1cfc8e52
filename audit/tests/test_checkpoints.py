"""Signed checkpoints: the key file, signing what moved (once), and what verify_audit finds with
them that the hash links alone cannot (a cut tail, a chain rewritten with fresh hashes)."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import canonical, chain_hash
from audit.checkpoints import checkpoints_sign_due, signing_public_key_hex
from audit.models import ChainHead, Checkpoint, DecisionRecord
from audit.signing import (
    SigningKeyError,
    load_or_create_signing_key,
    public_key_hex,
    rotate_signing_key,
    sign,
    verify_checkpoint,
)
from audit.tasks import sign_checkpoints
from audit.tests.helpers import append_only_trigger_off, verify_audit
from tests.factories import TeamFactory, record_decision

pytestmark = pytest.mark.django_db


def chain(team, count: int) -> list[DecisionRecord]:
    return [record_decision(team, arguments={"n": n}) for n in range(count)]


# --- the key file -------------------------------------------------------------------------------


def test_key_file__missing__created_0600_and_read_back_the_same(tmp_path):
    path = tmp_path / "sub" / "audit.key"

    key = load_or_create_signing_key(path)

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert public_key_hex(load_or_create_signing_key(path)) == public_key_hex(key)


def test_key_file__pem_accepted__garbage_refused_naming_the_file(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert public_key_hex(load_or_create_signing_key(pem)) == public_key_hex(key)

    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a key")
    with pytest.raises(SigningKeyError, match="garbage.key"):
        load_or_create_signing_key(garbage)


def test_verify_checkpoint__valid__tampered_payload_other_key_or_bad_hex__false():
    key = Ed25519PrivateKey.generate()
    payload = canonical({"team": "t", "stream": "decisions", "sequence": 3, "hash": "ab", "signed_at": "x"})
    signature = sign(key, payload)

    assert verify_checkpoint(payload, signature, public_key_hex(key))
    assert not verify_checkpoint(
        payload.replace('"sequence":3', '"sequence":2'), signature, public_key_hex(key)
    )
    assert not verify_checkpoint(payload, signature, public_key_hex(Ed25519PrivateKey.generate()))
    assert not verify_checkpoint(payload, "zz", public_key_hex(key))
    assert not verify_checkpoint(payload, signature, "00")


# --- signing ------------------------------------------------------------------------------------


def test_sign_due__heads_that_moved__signed_once_each_and_verifiable(monkeypatch):
    # Given two teams with chains and one without
    team, other, idle = TeamFactory(), TeamFactory(), TeamFactory()
    records = chain(team, 3)
    chain(other, 1)

    # When the beat task runs twice
    assert sign_checkpoints.delay().get() == 2
    assert sign_checkpoints.delay().get() == 0

    # Then each moved head was signed once, over its head, by this installation's key
    checkpoint = Checkpoint.objects.get(team=team)
    assert (checkpoint.stream, checkpoint.sequence, checkpoint.hash) == ("decisions", 3, records[-1].hash)
    assert checkpoint.public_key == signing_public_key_hex()
    assert verify_checkpoint(checkpoint.payload, checkpoint.signature, signing_public_key_hex())
    signed = json.loads(checkpoint.payload)
    assert signed == {
        "team": str(team.id),
        "stream": "decisions",
        "sequence": 3,
        "hash": records[-1].hash,
        "signed_at": signed["signed_at"],
    }
    assert not Checkpoint.objects.filter(team=idle).exists()

    # And once the chain moves on, the next run signs the new head only
    record_decision(team)
    assert [c.sequence for c in checkpoints_sign_due()] == [4]
    assert verify_audit(team)[0] == 0


# --- what verify_audit finds with them ----------------------------------------------------------


def test_verify_audit__tail_cut_and_head_moved_back__truncated():
    # Given a signed chain whose last two entries are deleted, head and all (links still hold)
    team = TeamFactory()
    chain(team, 5)
    checkpoints_sign_due()
    with append_only_trigger_off():
        DecisionRecord.objects.filter(team=team, sequence__gt=3).delete()
    kept = DecisionRecord.objects.get(team=team, sequence=3)
    ChainHead.objects.filter(team=team, stream="decisions").update(sequence=3, hash=kept.hash)

    code, output = verify_audit(team)

    assert code == 1
    assert "BROKEN at sequence 5: truncated: the chain ends at sequence 3" in output


def test_verify_audit__chain_rewritten_with_fresh_hashes__checkpoint_catches_it():
    # Given a signed chain rewritten from entry 2 on, every link recomputed
    team = TeamFactory()
    chain(team, 3)
    checkpoints_sign_due()
    with append_only_trigger_off():
        prev = DecisionRecord.objects.get(team=team, sequence=1).hash
        for entry in DecisionRecord.objects.filter(team=team, sequence__gte=2).order_by("sequence"):
            record = json.loads(entry.record)
            record["decision"] = "deny"
            text = canonical(record)
            digest = chain_hash(prev, text)
            DecisionRecord.objects.filter(pk=entry.pk).update(record=text, prev_hash=prev, hash=digest)
            prev = digest

    code, output = verify_audit(team)

    assert code == 1
    assert "BROKEN at sequence 3: rewritten" in output


def test_verify_audit__checkpoint_forged_with_another_key__bad_signature():
    team = TeamFactory()
    chain(team, 2)
    checkpoints_sign_due()
    forger = Ed25519PrivateKey.generate()
    checkpoint = Checkpoint.objects.get(team=team)
    Checkpoint.objects.filter(pk=checkpoint.pk).update(
        signature=sign(forger, checkpoint.payload), public_key=public_key_hex(forger)
    )

    code, output = verify_audit(team)

    assert code == 1
    assert "bad signature" in output


@pytest.mark.parametrize(("archived_through", "signed_over"), [(3, 3), (3, 2)])
def test_verify_audit__checkpointed_entry_archived__still_ok(tmp_path, archived_through, signed_over):
    # Given a checkpoint over an entry that archive_audit then moved to a file (the last archived
    # one, anchored in the database, or an earlier one, proven by the file)
    team = TeamFactory()
    chain(team, signed_over)
    checkpoints_sign_due()
    chain(team, archived_through - signed_over)
    call_command(
        "archive_audit",
        "--team",
        team.slug,
        "--through",
        str(archived_through),
        "--to",
        str(tmp_path / "a.jsonl"),
        stdout=io.StringIO(),
    )

    # Then verification holds; and a later cut of the tail is still caught
    code, output = verify_audit(team)
    assert code == 0 and output.startswith("OK 0 records"), output
    record_decision(team)
    checkpoints_sign_due()
    with append_only_trigger_off():
        DecisionRecord.objects.filter(team=team).delete()
    ChainHead.objects.filter(team=team, stream="decisions").update(sequence=archived_through)
    code, output = verify_audit(team)
    assert code == 1 and f"truncated: the chain ends at sequence {archived_through}" in output


# --- rotating the key ---------------------------------------------------------------------------


def test_rotate_signing_key__old_file_kept_aside__new_key_in_place_0600(tmp_path):
    path = tmp_path / "audit.key"
    original = load_or_create_signing_key(path)

    old, new, retired = rotate_signing_key(path)

    assert (
        public_key_hex(old) == public_key_hex(original) == public_key_hex(load_or_create_signing_key(retired))
    )
    assert public_key_hex(load_or_create_signing_key(path)) == public_key_hex(new) != public_key_hex(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["audit.key", retired.name])


def test_rotate_audit_key__every_head_signed_by_the_new_key_and_verify_holds_to_it(settings, tmp_path):
    # Given signed chains under the installation's first key
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "audit.key"
    team, other = TeamFactory(), TeamFactory()
    chain(team, 3)
    chain(other, 1)
    checkpoints_sign_due()
    old_key = signing_public_key_hex()

    # When the key is rotated
    out = io.StringIO()
    call_command("rotate_audit_key", stdout=out)

    # Then this process signs with the new key at once, and has signed both heads with it
    new_key = signing_public_key_hex()
    assert new_key != old_key
    assert f"new signing key {new_key}" in out.getvalue() and f"retired key {old_key}" in out.getvalue()
    assert "signed 2 chain head(s)" in out.getvalue()
    head = Checkpoint.objects.filter(team=team).order_by("-sequence", "-id").first()
    assert (head.sequence, head.public_key) == (3, new_key)
    assert checkpoints_sign_due() == []  # idempotent under the new key too
    assert verify_audit(team)[0] == 0

    # And a chain whose latest checkpoint is still the old key's verifies only while that key is
    # trusted as retired (say, a database restored from before the rotation)
    Checkpoint.objects.filter(team=team, public_key=new_key).delete()
    code, output = verify_audit(team)
    assert code == 1 and "bad signature" in output
    settings.AUDIT_RETIRED_PUBLIC_KEYS = (old_key,)
    assert verify_audit(team)[0] == 0


def test_rotate_audit_key__no_key_yet__refused_naming_the_file(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "missing.key"
    with pytest.raises(CommandError, match="missing.key: nothing to rotate"):
        call_command("rotate_audit_key")
