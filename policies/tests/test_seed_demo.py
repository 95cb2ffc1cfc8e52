"""seed_demo: the demo team, groups, users, key and rule set; idempotent."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from policies.management.commands.seed_demo import DEMO_RULES
from policies.models import RuleSetVersion
from tenancy.models import ApiKey, ApproverGroup, Membership, Team
from tenancy.selectors import principal_for_token

pytestmark = pytest.mark.django_db

DEMO_KEY = "demo-key-for-tests-0123456789abcdefghij"
APPROVER_KEY = "demo-approver-key-for-tests-0123456789"


def seed(monkeypatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo__creates_team_groups_users_key_and_rules(monkeypatch):
    output = seed(
        monkeypatch,
        VETO_DEMO_PASSWORD="demo-password-1",
        VETO_DEMO_API_KEY=DEMO_KEY,
        VETO_DEMO_APPROVER_API_KEY=APPROVER_KEY,
    )

    team = Team.objects.get(slug="demo")
    groups = {
        g.slug: set(g.members.values_list("username", flat=True))
        for g in ApproverGroup.objects.filter(team=team)
    }
    assert groups == {
        "compliance": {"alice", "bob"},  # two approvers: the quorum rule can pass
        "privacy-office": {"alice"},
        "engineering-leads": {"bob"},
    }
    assert get_user_model().objects.get(username="admin").is_superuser
    assert authenticate(username="carol", password="demo-password-1") is not None
    # dana reviews and publishes: a team admin without being a superuser
    dana = authenticate(username="dana", password="demo-password-1")
    assert dana is not None and not dana.is_staff and not dana.is_superuser
    assert Membership.objects.get(user=dana, team=team).role == Membership.Role.ADMIN
    assert Membership.objects.get(user__username="alice", team=team).role == Membership.Role.MEMBER
    principal = principal_for_token(DEMO_KEY)
    assert principal is not None and principal.team_id == team.id
    assert principal.scopes == frozenset(ApiKey.Scope.values)
    assert principal.user_id is None  # the team's key: no person, so it resolves no approval
    approver = principal_for_token(APPROVER_KEY)
    assert approver is not None and approver.team_id == team.id
    assert approver.user_id == get_user_model().objects.get(username="alice").id
    assert approver.scopes == frozenset({"decisions:read", "approvals:resolve"})
    active = RuleSetVersion.objects.get(team=team, is_active=True)
    assert active.number == 1 and len(active.document["rules"]) == 6
    quorum = active.document["rules"][-1]
    assert (quorum["id"], quorum["min_approvals"], quorum["approvers"]) == (
        "large_export_two_approvals",
        2,
        ["compliance"],
    )
    assert "published the demo rule set as version 1" in output


def test_seed_demo__second_run__changes_nothing(monkeypatch):
    seed(monkeypatch, VETO_DEMO_PASSWORD="demo-password-1", VETO_DEMO_API_KEY=DEMO_KEY)
    output = seed(monkeypatch, VETO_DEMO_PASSWORD="demo-password-1", VETO_DEMO_API_KEY=DEMO_KEY)
    assert Team.objects.filter(slug="demo").count() == 1
    assert ApiKey.objects.count() == 2  # the team's demo key and alice's personal key
    assert RuleSetVersion.objects.count() == 1
    assert get_user_model().objects.count() == 5
    assert "version 1 is active" in output


def test_seed_demo__without_env__generates_and_prints_password_and_key_once(monkeypatch):
    monkeypatch.delenv("VETO_DEMO_PASSWORD", raising=False)
    monkeypatch.delenv("VETO_DEMO_API_KEY", raising=False)
    monkeypatch.delenv("VETO_DEMO_APPROVER_API_KEY", raising=False)
    first = seed(monkeypatch)
    password = next(line for line in first.splitlines() if line.startswith("Password:")).split()[1]
    token = next(line for line in first.splitlines() if line.startswith("API key:")).split()[2]
    approver_token = next(line for line in first.splitlines() if line.startswith("Approver key")).split()[3]
    assert authenticate(username="alice", password=password) is not None
    assert principal_for_token(token) is not None
    approver = principal_for_token(approver_token)
    assert approver is not None and approver.user_id is not None
    second = seed(monkeypatch)
    assert password not in second and token not in second and approver_token not in second


def test_seed_demo__seeded_before_dana_existed__adds_her_and_says_whose_password_is_new(monkeypatch):
    # Given a demo seeded by an earlier version of the command (no dana) with a generated password
    monkeypatch.delenv("VETO_DEMO_PASSWORD", raising=False)
    monkeypatch.delenv("VETO_DEMO_API_KEY", raising=False)
    first = seed(monkeypatch)
    old_password = next(line for line in first.splitlines() if line.startswith("Password:")).split()[1]
    get_user_model().objects.filter(username="dana").delete()
    # When it runs again
    second = seed(monkeypatch)
    # Then dana exists with a new password, named as hers alone, and the others keep theirs
    line = next(line for line in second.splitlines() if line.startswith("Password:"))
    assert "for dana" in line and "the others' are unchanged" in line
    assert authenticate(username="dana", password=line.split()[1]) is not None
    assert authenticate(username="alice", password=old_password) is not None


def test_seed_demo__demo_an_earlier_version_published__gets_the_quorum_rule_once(monkeypatch):
    # Given a demo seeded before the quorum rule: its version 1 is the integration pages' rules
    seed(monkeypatch, VETO_DEMO_PASSWORD="demo-password-1", VETO_DEMO_API_KEY=DEMO_KEY)
    team = Team.objects.get(slug="demo")
    RuleSetVersion.objects.filter(team=team).update(source_text=DEMO_RULES.read_text())
    # When it is seeded again, twice
    output = seed(monkeypatch, VETO_DEMO_PASSWORD="demo-password-1")
    again = seed(monkeypatch, VETO_DEMO_PASSWORD="demo-password-1")
    # Then version 2, with the quorum rule, is published once and then left alone
    active = RuleSetVersion.objects.get(team=team, is_active=True)
    assert active.number == 2 and active.document["rules"][-1]["id"] == "large_export_two_approvals"
    assert "published the demo rule set as version 2" in output and "version 2 is active" in again


def test_seed_demo__a_version_someone_else_published__left_alone(monkeypatch):
    seed(monkeypatch, VETO_DEMO_PASSWORD="demo-password-1", VETO_DEMO_API_KEY=DEMO_KEY)
    team = Team.objects.get(slug="demo")
    RuleSetVersion.objects.filter(team=team).update(source_text=DEMO_RULES.read_text(), author_name="dana")
    assert "version 1 is active" in seed(monkeypatch, VETO_DEMO_PASSWORD="demo-password-1")
    assert RuleSetVersion.objects.filter(team=team).count() == 1


def test_seed_demo__team_option_seeds_an_existing_team_and_creates_no_demo_team(monkeypatch):
    from tenancy.models import Organization

    org = Organization.objects.create(slug="bench", name="Benchmark")
    big = Team.objects.create(organization=org, slug="bench-big", name="bench-big")
    monkeypatch.setenv("VETO_DEMO_API_KEY", DEMO_KEY)
    monkeypatch.setenv("VETO_DEMO_APPROVER_API_KEY", APPROVER_KEY)

    call_command("seed_demo", "--team", "bench-big", stdout=io.StringIO())

    assert not Team.objects.filter(slug="demo").exists()
    assert principal_for_token(DEMO_KEY).team_id == big.id
    assert set(ApproverGroup.objects.filter(team=big).values_list("slug", flat=True)) == {
        "compliance",
        "privacy-office",
        "engineering-leads",
    }
    assert RuleSetVersion.objects.get(team=big, is_active=True).number == 1


def test_seed_demo__team_option_names_a_missing_team():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no team 'nowhere'"):
        call_command("seed_demo", "--team", "nowhere", stdout=io.StringIO())
