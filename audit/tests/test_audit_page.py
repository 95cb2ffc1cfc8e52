"""The team's audit page: chain heads, the last verification, and verifying on demand."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from audit.models import DecisionRecord, Verification
from tenancy.models import Membership
from tests.factories import TeamFactory, UserFactory, record_decision

pytestmark = pytest.mark.django_db


def member_client(team, *, role=Membership.Role.MEMBER) -> Client:
    user = UserFactory()
    Membership.objects.create(user=user, team=team, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_audit_page__member_verifies__ok_run_recorded_and_shown():
    team = TeamFactory()
    for n in range(3):
        record_decision(team, arguments={"n": n})
    client = member_client(team)

    response = client.post(reverse("dashboard:audit-verify", args=[team.slug]), follow=True)

    assert response.status_code == 200
    text = response.content.decode()
    assert "Decisions: OK, 3 records verified" in text
    run = Verification.objects.get(team=team, stream="decisions")
    assert (run.ok, run.count, run.head_sequence) == (True, 3, 3)
    assert f"#3 <code>{run.head_hash}</code>" in text


def test_audit_page__tampered_record__shown_broken_where_it_breaks():
    team = TeamFactory()
    for n in range(3):
        record_decision(team, arguments={"n": n})
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The append-only trigger would refuse the edit: play the attacker with table rights.
            cursor.execute("SET session_replication_role = replica")
        DecisionRecord.objects.filter(team=team, sequence=2).update(record='{"sequence":2,"forged":true}')
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = DEFAULT")

    response = member_client(team).post(reverse("dashboard:audit-verify", args=[team.slug]), follow=True)

    assert "BROKEN at sequence 2: record changed" in response.content.decode()


def test_audit_page__someone_outside_the_team__404():
    team = TeamFactory()
    outsider = member_client(TeamFactory())

    assert outsider.get(reverse("dashboard:audit", args=[team.slug])).status_code == 404
    assert outsider.post(reverse("dashboard:audit-verify", args=[team.slug])).status_code == 404
    assert not Verification.objects.exists()
