"""Retention: archiving the start of a chain keeps both halves provable."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from veto.audit.chain import compute_chain_hash

from audit.models import DecisionRecord
from tests.factories import TeamFactory, record_decision

pytestmark = pytest.mark.django_db


def verify(team) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", "--team", team.slug, stdout=out, stderr=err)
        return 0, out.getvalue().strip()
    except SystemExit as exit_:
        return int(exit_.code or 0), err.getvalue().strip()


def test_archive__start_of_the_chain__file_and_remaining_chain_both_verify(tmp_path):
    team = TeamFactory()
    for n in range(5):
        record_decision(team, arguments={"n": n})
    archive = tmp_path / "archive.jsonl"

    call_command(
        "archive_audit", "--team", team.slug, "--through", "3", "--to", str(archive), stdout=io.StringIO()
    )

    # The database keeps 4 and 5, anchored on 3's hash; verification still holds
    assert list(
        DecisionRecord.objects.filter(team=team).values_list("sequence", flat=True).order_by("sequence")
    ) == [4, 5]
    code, output = verify(team)
    assert (code, output.split(",")[0]) == (0, "OK 2 records")
    # And the file proves 1 to 3 with nothing but the SDK
    header, *entries = [json.loads(line) for line in archive.read_text().splitlines()]
    prev = header["startsAfterHash"]
    for expected, entry in enumerate(entries, start=1):
        assert entry["sequence"] == expected and entry["prev_hash"] == prev
        assert compute_chain_hash(prev, entry["record"]) == entry["hash"]
        prev = entry["hash"]
    first_left = DecisionRecord.objects.get(team=team, sequence=4)
    assert first_left.prev_hash == prev


def test_archive__unknown_sequence_or_existing_file__refused_and_nothing_removed(tmp_path):
    team = TeamFactory()
    record_decision(team)
    existing = tmp_path / "exists.jsonl"
    existing.write_text("")

    with pytest.raises(CommandError, match="not in the chain"):
        call_command(
            "archive_audit", "--team", team.slug, "--through", "9", "--to", str(tmp_path / "a.jsonl")
        )
    with pytest.raises(CommandError, match="exists"):
        call_command("archive_audit", "--team", team.slug, "--through", "1", "--to", str(existing))

    assert DecisionRecord.objects.filter(team=team).count() == 1
