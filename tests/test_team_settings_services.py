"""team_settings.services: each change of a team's members, roles, approver groups, options and
members' keys is one entry in its governance trail (kind team.changed), announced once it commits;
the last admin stays; only the team's admins (and staff) may; races leave the team with an admin."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from django.db import close_old_connections, connection

from audit.models import AuditEvent, ChainStream
from audit.selectors import team_events_after
from audit.services import chain_verify
from common.events import EventType
from team_settings import services
from team_settings.selectors import UserNotFound, user_find
from tenancy.actor import Actor
from tenancy.models import ApiKey, ApproverGroup, Membership
from tenancy.selectors import principal_for_token
from tests.event_recording import recording
from tests.factories import ApproverGroupFactory, TeamFactory, UserFactory, personal_api_key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory(slug="payments")


@pytest.fixture
def dana(team):
    user = UserFactory(username="dana")
    Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def carol(team):
    user = UserFactory(username="carol", email="carol@example.com")
    Membership.objects.create(user=user, team=team, role=Membership.Role.MEMBER)
    return user


def entries(team) -> list[dict]:
    return [
        json.loads(record)
        for record in AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TEAM_CHANGED)
        .order_by("sequence")
        .values_list("record", flat=True)
    ]


def test_membership_add__by_an_admin__adds_them_and_writes_one_trail_entry_naming_both(team, dana):
    # Given an admin and a person who is not in the team
    bob = UserFactory(username="bob")
    # When the admin adds them as a member
    services.membership_add(
        team=team, user=bob, role="member", actor=Actor.person(dana, remote_addr="10.0.0.9")
    )
    # Then they are a member, and the trail has one entry: who, whom, what, from where
    assert Membership.objects.get(team=team, user=bob).role == "member"
    [entry] = entries(team)
    assert (entry["actor"], entry["from"], entry["kind"]) == ("dana", "10.0.0.9", "team.changed")
    assert entry["details"] == {
        "change": "member_added",
        "user_id": bob.pk,
        "username": "bob",
        "role": "member",
    }


def test_membership_add__already_a_member__conflict_and_no_entry(team, dana, carol):
    with pytest.raises(services.Conflict) as refused:
        services.membership_add(team=team, user=carol, role="admin", actor=Actor.person(dana))
    assert refused.value.code == "already_a_member"
    assert Membership.objects.get(team=team, user=carol).role == "member"
    assert entries(team) == []


def test_membership_add__a_role_the_model_does_not_have__refused(team, dana):
    # Given an admin who tries to grant more than a team admin (there is no such role)
    with pytest.raises(services.InvalidInput):
        services.membership_add(team=team, user=UserFactory(), role="superuser", actor=Actor.person(dana))
    assert entries(team) == []


def test_services__a_member_who_is_not_admin__refused_with_team_admin_required(team, carol):
    # Given a plain member
    bob = UserFactory(username="bob")
    actor = Actor.person(carol)
    # When they try each kind of change, Then each is refused (403) and nothing is written
    attempts = [
        lambda: services.membership_add(team=team, user=bob, role="member", actor=actor),
        lambda: services.membership_role_change(team=team, user=carol, role="admin", actor=actor),
        lambda: services.membership_remove(team=team, user=carol, actor=actor),
        lambda: services.approver_group_create(team=team, slug="x", name="X", actor=actor),
        lambda: services.team_options_update(
            team=team, admins_may_approve=True, require_policy_review=True, actor=actor
        ),
        lambda: services.member_api_key_revoke(team=team, key_id=uuid.uuid4(), actor=actor),
    ]
    for attempt in attempts:
        with pytest.raises(services.TeamAdminRequired) as refused:
            attempt()
        assert refused.value.status_code == 403
    assert Membership.objects.get(team=team, user=carol).role == "member"
    assert entries(team) == []


def test_services__an_admin_of_another_team__refused(team, carol):
    other_admin = UserFactory()
    Membership.objects.create(user=other_admin, team=TeamFactory(), role=Membership.Role.ADMIN)
    with pytest.raises(services.TeamAdminRequired):
        services.membership_remove(team=team, user=carol, actor=Actor.person(other_admin))
    assert Membership.objects.filter(team=team, user=carol).exists()


def test_services__an_api_key__refused_even_with_every_scope(team, dana, carol):
    personal_api_key_for(dana, team, role="admin", scopes=tuple(ApiKey.Scope.values))
    principal = principal_for_token(personal_api_key_for(dana, team, name="second", scopes=("admin",)))
    assert principal is not None
    with pytest.raises(services.TeamAdminRequired):
        services.membership_role_change(team=team, user=carol, role="admin", actor=Actor.key(principal))


def test_services__staff_who_are_no_member__may(team, carol):
    staff = UserFactory(is_staff=True)
    services.membership_role_change(team=team, user=carol, role="admin", actor=Actor.person(staff))
    assert Membership.objects.get(team=team, user=carol).role == "admin"


def test_membership_role_change__promote_and_demote__one_entry_each_with_previous_role(team, dana, carol):
    services.membership_role_change(team=team, user=carol, role="admin", actor=Actor.person(dana))
    services.membership_role_change(
        team=team, user=carol, role="admin", actor=Actor.person(dana)
    )  # no change
    services.membership_role_change(team=team, user=dana, role="member", actor=Actor.person(carol))
    assert [
        (e["details"]["username"], e["details"]["previous_role"], e["details"]["role"]) for e in entries(team)
    ] == [
        ("carol", "member", "admin"),
        ("dana", "admin", "member"),
    ]


def test_membership_role_change__the_last_admin_demotes_themselves__refused_with_a_clear_message(
    team, dana, carol
):
    with pytest.raises(services.LastAdmin) as refused:
        services.membership_role_change(team=team, user=dana, role="member", actor=Actor.person(dana))
    assert refused.value.status_code == 409
    assert "dana is the last admin of payments" in refused.value.message
    assert Membership.objects.get(team=team, user=dana).role == "admin"
    assert entries(team) == []


def test_membership_remove__the_last_admin__refused_also_for_staff(team, dana, carol):
    with pytest.raises(services.LastAdmin):
        services.membership_remove(team=team, user=dana, actor=Actor.person(UserFactory(is_staff=True)))
    assert Membership.objects.filter(team=team, user=dana).exists()


def test_membership_remove__a_member__leaves_groups_keys_revoked_one_entry_and_the_event_names_them(
    team, dana, carol, django_capture_on_commit_callbacks
):
    # Given carol in an approver group of the team (and of another team) with a personal key
    compliance = ApproverGroupFactory(team=team, slug="compliance")
    compliance.members.add(carol)
    elsewhere = ApproverGroupFactory(slug="compliance")
    elsewhere.members.add(carol)
    token = personal_api_key_for(carol, team)
    # When dana removes her
    with recording(EventType.TEAM_CHANGED) as heard, django_capture_on_commit_callbacks(execute=True):
        services.membership_remove(team=team, user=carol, actor=Actor.person(dana))
    # Then she is out of the team and its group (not the other team's), her key no longer works,
    assert not Membership.objects.filter(team=team, user=carol).exists()
    assert list(compliance.members.all()) == [] and list(elsewhere.members.all()) == [carol]
    assert principal_for_token(token) is None
    assert ApiKey.objects.get(user=carol).revoked_at is not None
    # one entry copies what she was, and its event names her for the live path
    [entry] = entries(team)
    assert entry["details"] == {
        "change": "member_removed",
        "user_id": carol.pk,
        "username": "carol",
        "role": "member",
        "groups": ["compliance"],
        "keys_revoked": 1,
    }
    [event] = heard
    assert (event.type, event.team_id, dict(event.data)) == (
        EventType.TEAM_CHANGED,
        team.id,
        {"change": "member_removed", "user_id": str(carol.pk)},
    )


def test_membership_remove__not_a_member__conflict(team, dana):
    with pytest.raises(services.NotAMember):
        services.membership_remove(team=team, user=UserFactory(), actor=Actor.person(dana))


def test_approver_groups__create_rename_add_remove_delete__one_entry_each(team, dana, carol):
    actor = Actor.person(dana)
    group = services.approver_group_create(team=team, slug="", name="Risk Office", actor=actor)
    assert group.slug == "risk-office"
    services.approver_group_rename(team=team, slug="risk-office", name="Risk office", actor=actor)
    services.approver_group_member_add(team=team, slug="risk-office", user=carol, actor=actor)
    services.approver_group_member_add(team=team, slug="risk-office", user=carol, actor=actor)  # no change
    services.approver_group_member_remove(team=team, slug="risk-office", user=carol, actor=actor)
    services.approver_group_member_add(team=team, slug="risk-office", user=dana, actor=actor)
    services.approver_group_delete(team=team, slug="risk-office", actor=actor)
    assert not ApproverGroup.objects.filter(team=team).exists()
    assert [e["details"]["change"] for e in entries(team)] == [
        "group_created",
        "group_renamed",
        "group_member_added",
        "group_member_removed",
        "group_member_added",
        "group_deleted",
    ]
    deleted = entries(team)[-1]["details"]
    assert deleted == {
        "change": "group_deleted",
        "user_id": None,
        "username": None,
        "group": "risk-office",
        "group_name": "Risk office",
        "members": ["dana"],
    }


def test_approver_group_create__slug_taken__conflict(team, dana):
    ApproverGroupFactory(team=team, slug="compliance")
    with pytest.raises(services.Conflict) as refused:
        services.approver_group_create(team=team, slug="compliance", name="Again", actor=Actor.person(dana))
    assert refused.value.code == "group_exists"


def test_approver_group_member_add__someone_outside_the_team__refused(team, dana):
    ApproverGroupFactory(team=team, slug="compliance")
    with pytest.raises(services.NotAMember):
        services.approver_group_member_add(
            team=team, slug="compliance", user=UserFactory(), actor=Actor.person(dana)
        )


def test_team_options_update__changes__one_entry_with_from_and_to_and_none_when_unchanged(team, dana):
    services.team_options_update(
        team=team, admins_may_approve=True, require_policy_review=False, actor=Actor.person(dana)
    )
    services.team_options_update(
        team=team, admins_may_approve=True, require_policy_review=False, actor=Actor.person(dana)
    )
    team.refresh_from_db()
    assert (team.admins_may_approve, team.require_policy_review) == (True, False)
    [entry] = entries(team)
    assert entry["details"]["options"] == {"admins_may_approve": {"from": False, "to": True}}


def test_member_api_key_revoke__a_members_key__revoked_once_with_one_entry(team, dana, carol):
    token = personal_api_key_for(carol, team)
    key = ApiKey.objects.get(user=carol)
    _, revoked = services.member_api_key_revoke(team=team, key_id=key.id, actor=Actor.person(dana))
    _, again = services.member_api_key_revoke(team=team, key_id=key.id, actor=Actor.person(dana))
    assert (revoked, again) == (True, False)
    assert principal_for_token(token) is None
    [entry] = entries(team)
    assert (entry["details"]["change"], entry["details"]["key_prefix"], entry["details"]["user_id"]) == (
        "key_revoked",
        key.prefix,
        carol.pk,
    )


def test_member_api_key_revoke__another_teams_key__not_found(team, dana):
    other = TeamFactory()
    personal_api_key_for(UserFactory(), other)
    with pytest.raises(services.NotFound):
        services.member_api_key_revoke(team=team, key_id=ApiKey.objects.get().id, actor=Actor.person(dana))


def test_trail__after_every_kind_of_change__chain_verifies_and_team_events_after_rebuilds_the_events(
    team, dana, carol
):
    # Given one of each change
    actor = Actor.person(dana)
    bob = UserFactory(username="bob")
    services.membership_add(team=team, user=bob, role="member", actor=actor)
    services.membership_role_change(team=team, user=bob, role="admin", actor=actor)
    services.approver_group_create(team=team, slug="ops", name="Ops", actor=actor)
    services.approver_group_member_add(team=team, slug="ops", user=bob, actor=actor)
    services.team_options_update(team=team, admins_may_approve=True, require_policy_review=True, actor=actor)
    services.membership_remove(team=team, user=bob, actor=actor)
    # When the chain is verified and a consumer resumes from its start
    result = chain_verify(team_id=team.id, stream=ChainStream.EVENTS)
    resumed = team_events_after(team_id=team.id, stream=ChainStream.EVENTS, after_sequence=0)
    # Then it holds, and each entry is its team.changed event, in order
    assert result.ok and result.count == 6
    assert [(e.type, e.data["change"], e.data["user_id"]) for e in resumed] == [
        (EventType.TEAM_CHANGED, "member_added", str(bob.pk)),
        (EventType.TEAM_CHANGED, "role_changed", str(bob.pk)),
        (EventType.TEAM_CHANGED, "group_created", None),
        (EventType.TEAM_CHANGED, "group_member_added", str(bob.pk)),
        (EventType.TEAM_CHANGED, "options_changed", None),
        (EventType.TEAM_CHANGED, "member_removed", str(bob.pk)),
    ]
    assert [e.sequence for e in resumed] == [1, 2, 3, 4, 5, 6]


def test_user_find__by_username_or_email_case_insensitive__and_unknown_refused(carol):
    assert user_find(name="CAROL") == carol
    assert user_find(name=" Carol@Example.com ") == carol
    with pytest.raises(UserNotFound):
        user_find(name="nobody@example.com")


def test_user_find__an_email_two_people_share__refused_asking_for_the_username():
    UserFactory(email="shared@example.com")
    UserFactory(email="shared@example.com")
    with pytest.raises(UserNotFound, match="give their username"):
        user_find(name="shared@example.com")


@pytest.mark.django_db(transaction=True)
def test_membership_role_change__both_admins_step_down_at_once__one_admin_remains():
    # PostgreSQL only: SQLite has no row locks to race on (its writes are serialised anyway).
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks")
    # Given a team with exactly two admins
    team = TeamFactory()
    first, second = UserFactory(), UserFactory()
    for user in (first, second):
        Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def step_down(user):
        try:
            barrier.wait()
            services.membership_role_change(team=team, user=user, role="member", actor=Actor.person(user))
            outcomes.append("demoted")
        except services.LastAdmin:
            outcomes.append("last_admin")
        finally:
            close_old_connections()
            connection.close()

    # When each makes themselves a member at the same moment
    threads = [threading.Thread(target=step_down, args=(user,)) for user in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then one wins, the other is told it would leave no admin, and one admin remains
    assert sorted(outcomes) == ["demoted", "last_admin"]
    assert Membership.objects.filter(team=team, role=Membership.Role.ADMIN).count() == 1
    assert AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TEAM_CHANGED).count() == 1
