"""The stored chain under attack: PostgreSQL refuses edits outright; an attacker who gets past
that (trigger off) is named by ``verify_audit`` at the entry and with the kind of change."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import DecisionRecord
from audit.tests.helpers import append_only_trigger_off, verify_audit
from tests.factories import TeamFactory, record_decision

pytestmark = pytest.mark.django_db


def chain(team, count: int = 5) -> None:
    for n in range(count):
        record_decision(team, arguments={"n": n})


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger exists on PostgreSQL only"
)
def test_trigger__update_or_delete_of_a_decision__refused_by_the_database():
    # Given a recorded decision
    team = TeamFactory()
    chain(team, 2)
    rows = DecisionRecord.objects.filter(team=team, sequence=2)

    # When anyone, even through the ORM, edits or deletes it: the database refuses
    with pytest.raises(DatabaseError, match="append-only: UPDATE on audit_decisionrecord refused"):
        with transaction.atomic():
            rows.update(reason="nothing to see")
    with pytest.raises(DatabaseError, match="append-only: DELETE on audit_decisionrecord refused"):
        with transaction.atomic():
            rows.delete()

    # Then the row is as written and the chain verifies
    assert DecisionRecord.objects.get(team=team, sequence=2).reason == ""
    assert verify_audit(team)[0] == 0


def test_verify_audit__record_edited__record_changed_at_its_sequence():
    team = TeamFactory()
    chain(team)
    entry = DecisionRecord.objects.get(team=team, sequence=3)
    with append_only_trigger_off():
        DecisionRecord.objects.filter(pk=entry.pk).update(record=entry.record.replace('"allow"', '"deny"'))

    code, output = verify_audit(team)

    assert code == 1
    assert output.startswith("BROKEN at sequence 3: record changed")


def test_verify_audit__row_deleted__row_missing_at_its_sequence():
    team = TeamFactory()
    chain(team)
    with append_only_trigger_off():
        DecisionRecord.objects.filter(team=team, sequence=4).delete()

    code, output = verify_audit(team)

    assert code == 1
    assert output.startswith("BROKEN at sequence 5: row missing: expected sequence 4, found 5")


def test_verify_audit__two_rows_sequence_numbers_swapped__order_changed():
    team = TeamFactory()
    chain(team)
    second, third = (DecisionRecord.objects.get(team=team, sequence=n) for n in (2, 3))
    with append_only_trigger_off():
        # Through a free number: (team, sequence) is unique.
        DecisionRecord.objects.filter(pk=second.pk).update(sequence=-1)
        DecisionRecord.objects.filter(pk=third.pk).update(sequence=2)
        DecisionRecord.objects.filter(pk=second.pk).update(sequence=3)

    code, output = verify_audit(team)

    assert code == 1
    assert output.startswith("BROKEN at sequence 2: order changed")
