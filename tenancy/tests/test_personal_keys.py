"""Personal API keys: one person's, with at most their rights in the key's team, and only as good
as that person (a member, active) each time the key is used."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from common.errors import NotFound
from tenancy.models import ApiKey, Membership
from tenancy.selectors import principal_for_token
from tenancy.services import (
    ScopeNotAllowed,
    api_key_create,
    membership_remove,
    personal_api_key_create,
)
from tests.factories import TeamFactory, UserFactory, personal_api_key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory(slug="payments")


@pytest.fixture
def alice(team):
    user = UserFactory(username="alice")
    Membership.objects.create(user=user, team=team, role=Membership.Role.MEMBER)
    return user


def test_principal_for_token__personal_key__carries_its_user(team, alice):
    # Given alice's personal key
    token = personal_api_key_for(alice, team)
    # When it authenticates
    principal = principal_for_token(token)
    # Then the principal is alice's, in her team, with the key's scopes
    assert principal is not None
    assert (principal.user_id, principal.team_id, principal.is_personal) == (alice.id, team.id, True)
    assert principal.scopes == frozenset({"decisions:read", "approvals:resolve"})


def test_principal_for_token__team_key__is_no_person(team):
    # Given a team's key
    _, token = api_key_create(team=team, name="ci")
    # When it authenticates
    principal = principal_for_token(token)
    # Then it names no person
    assert principal is not None and principal.user_id is None and not principal.is_personal


@pytest.mark.parametrize(
    "scope", [ApiKey.Scope.ADMIN, ApiKey.Scope.POLICIES_PUBLISH, ApiKey.Scope.POLICIES_WRITE]
)
def test_personal_api_key_create__scope_a_member_may_not_hold__403_and_nothing_created(team, alice, scope):
    # When a plain member asks for a scope only team admins have
    with pytest.raises(ScopeNotAllowed) as refused:
        personal_api_key_create(user=alice, team=team, name="mine", scopes=["approvals:resolve", scope])
    # Then it is refused, naming the scope, and no key exists
    assert refused.value.status_code == 403
    assert refused.value.details["refused"] == [scope]
    assert not ApiKey.objects.filter(user=alice).exists()


def test_personal_api_key_create__team_admin__may_hold_every_scope(team):
    # Given a team admin
    dana = UserFactory(username="dana")
    Membership.objects.create(user=dana, team=team, role=Membership.Role.ADMIN)
    # When she makes a key with every scope
    api_key, token = personal_api_key_create(user=dana, team=team, name="mine", scopes=ApiKey.Scope.values)
    # Then she gets it, as hers
    principal = principal_for_token(token)
    assert principal is not None and principal.scopes == frozenset(ApiKey.Scope.values)
    assert api_key.user == dana


def test_personal_api_key_create__not_a_member_of_the_team__not_found(team):
    # Given someone who is not in the team; when they ask for a key there, then it is refused
    outsider = UserFactory(username="mallory")
    with pytest.raises(NotFound):
        personal_api_key_create(user=outsider, team=team, name="mine")
    assert not ApiKey.objects.exists()


def test_principal_for_token__owner_demoted__key_keeps_only_what_the_new_role_allows(team):
    # Given an admin's key holding admin and publish rights
    dana = UserFactory(username="dana")
    membership = Membership.objects.create(user=dana, team=team, role=Membership.Role.ADMIN)
    _, token = personal_api_key_create(
        user=dana, team=team, name="mine", scopes=["admin", "policies:publish", "approvals:resolve"]
    )
    # When she becomes a plain member
    membership.role = Membership.Role.MEMBER
    membership.save()
    # Then her key, used now, carries only what a member may hold
    principal = principal_for_token(token)
    assert principal is not None and principal.scopes == frozenset({"approvals:resolve"})


def test_principal_for_token__membership_removed__key_invalid_and_revoked(team, alice):
    # Given alice's working key
    token = personal_api_key_for(alice, team)
    assert principal_for_token(token) is not None
    # When she is taken out of the team
    membership_remove(membership=Membership.objects.get(user=alice, team=team))
    # Then her key is invalid, and revoked for good
    assert principal_for_token(token) is None
    assert ApiKey.objects.get(user=alice).revoked_at is not None


def test_principal_for_token__membership_deleted_any_other_way__key_invalid(team, alice):
    # Given a key whose owner's membership is deleted without the service (the admin's inline, the ORM)
    token = personal_api_key_for(alice, team)
    Membership.objects.filter(user=alice, team=team).delete()
    # Then the key is revoked all the same, and would be invalid even if it were not
    assert principal_for_token(token) is None
    ApiKey.objects.filter(user=alice).update(revoked_at=None)
    assert principal_for_token(token) is None


def test_principal_for_token__owner_deactivated__key_invalid(team, alice):
    # Given alice's key; when her account is deactivated; then the key is invalid
    token = personal_api_key_for(alice, team)
    alice.is_active = False
    alice.save()
    assert principal_for_token(token) is None


def test_principal_cache__membership_removed__cached_principal_dropped(
    team, alice, settings, django_capture_on_commit_callbacks
):
    # Given a key cache that would keep a principal for a minute, and alice's key in it
    settings.API_KEY_CACHE_SECONDS = 60.0
    token = personal_api_key_for(alice, team)
    assert principal_for_token(token) is not None
    # When her membership ends (and commits)
    with django_capture_on_commit_callbacks(execute=True):
        Membership.objects.filter(user=alice, team=team).delete()
    # Then the cache no longer answers for her key
    assert principal_for_token(token) is None


def test_principal_cache__owner_deactivated__cached_principal_dropped(
    team, alice, settings, django_capture_on_commit_callbacks
):
    # Given a minute-long key cache holding alice's key
    settings.API_KEY_CACHE_SECONDS = 60.0
    token = personal_api_key_for(alice, team)
    assert principal_for_token(token) is not None
    # When her account is deactivated (and commits)
    with django_capture_on_commit_callbacks(execute=True):
        alice.is_active = False
        alice.save()
    # Then the cache no longer answers for her key
    assert principal_for_token(token) is None


def test_create_api_key_command__personal_key__prints_it_alone_on_the_last_line(team, alice):
    # When an operator makes alice a key
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_key", "--team", "payments", "--name", "alice cli", "--user", "alice",
        "--scopes", "decisions:read,approvals:resolve", stdout=out, stderr=err,
    )  # fmt: skip
    # Then the last line is the key alone, and it acts as alice
    token = out.getvalue().splitlines()[-1]
    assert token.startswith("vk_") and " " not in token
    principal = principal_for_token(token)
    assert principal is not None and principal.user_id == alice.id
    assert "for alice" in err.getvalue()


def test_create_api_key_command__personal_key_with_admin_scope_for_a_member__refused(team, alice):
    # When an operator asks for an admin key for alice, a plain member; then it is refused
    with pytest.raises(CommandError) as refused:
        call_command(
            "create_api_key", "--team", "payments", "--name", "x", "--user", "alice", "--scopes", "admin",
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
    assert "admin" in str(refused.value)
    assert not ApiKey.objects.exists()


def test_create_api_key_command__personal_key_all_scopes__every_scope_the_user_may_hold(team, alice):
    # When an operator asks for "all" scopes for alice; then she gets every scope a member may hold
    out = io.StringIO()
    call_command(
        "create_api_key", "--team", "payments", "--name", "x", "--user", "alice", "--scopes", "all",
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    principal = principal_for_token(out.getvalue().splitlines()[-1])
    assert principal is not None
    assert principal.scopes == frozenset({"runtime", "decisions:read", "approvals:resolve"})


@pytest.mark.parametrize(("user", "message"), [("nobody", "does not exist"), ("carol", "not a member")])
def test_create_api_key_command__user_unknown_or_not_a_member__clear_error(team, user, message):
    # Given carol, in no team; when a key is asked for her or for nobody; then the error says why
    UserFactory(username="carol")
    with pytest.raises(CommandError) as refused:
        call_command(
            "create_api_key", "--team", "payments", "--name", "x", "--user", user,
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
    assert message in str(refused.value)


def test_personal_api_key_create__inactive_user__refused_saying_so(team, alice):
    # Given alice, deactivated; when a key is made for her; then it is refused, saying why
    alice.is_active = False
    alice.save()
    with pytest.raises(NotFound) as refused:
        personal_api_key_create(user=alice, team=team, name="mine")
    assert "inactive" in refused.value.message
    assert not ApiKey.objects.exists()
