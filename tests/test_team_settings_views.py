"""The team settings page: admins see and change everything (POST-redirect-GET with a message);
other members see it read-only and are refused a form (403); outsiders get a 404."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from tenancy.models import ApiKey, ApproverGroup, Membership
from tests.factories import ApproverGroupFactory, TeamFactory, UserFactory, personal_api_key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    team = TeamFactory(slug="payments", name="Payments")
    return team


@pytest.fixture
def people(team):
    dana, carol = UserFactory(username="dana"), UserFactory(username="carol")
    Membership.objects.create(user=dana, team=team, role=Membership.Role.ADMIN)
    Membership.objects.create(user=carol, team=team, role=Membership.Role.MEMBER)
    ApproverGroupFactory(team=team, slug="compliance", name="Compliance").members.add(carol)
    personal_api_key_for(carol, team, name="carol's laptop")
    return {"dana": dana, "carol": carol}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(team) -> str:
    return reverse("team_settings:page", args=[team.slug])


def url(name: str, team) -> str:
    return reverse(f"team_settings:{name}", args=[team.slug])


def trail_count(team) -> int:
    return AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TEAM_CHANGED).count()


def test_settings_page__admin__200_with_members_groups_options_keys_and_forms(team, people):
    response = signed_in(people["dana"]).get(page(team))
    assert response.status_code == 200
    html = response.content.decode()
    for text in ('id="member-carol"', 'id="group-compliance"', "carol&#x27;s laptop", 'id="options"'):
        assert text in html
    assert 'action="/dashboard/teams/payments/settings/members/add"' in html
    assert '<table class="data members">' in html and 'data-label="Role"' in html


def test_settings_page__member__read_only_without_forms_or_keys(team, people):
    response = signed_in(people["carol"]).get(page(team))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="read-only"' in html and 'id="member-dana"' in html
    assert '<form method="post" action="/dashboard/teams/payments/settings/' not in html
    assert 'id="keys"' not in html and "carol&#x27;s laptop" not in html


def test_settings_page__outsider__404_and_staff_200(team, people):
    assert signed_in(UserFactory()).get(page(team)).status_code == 404
    assert signed_in(UserFactory(is_staff=True)).get(page(team)).status_code == 200


def test_settings_page__anonymous__sent_to_log_in(team):
    response = Client().get(page(team))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_member_add__by_email__redirects_back_with_a_message_and_the_member_shows(team, people):
    # Given an admin and a person with an account
    UserFactory(username="erin", email="erin@example.com")
    client = signed_in(people["dana"])
    # When the admin adds them by e-mail as an admin
    response = client.post(url("member-add", team), {"user": "Erin@example.com", "role": "admin"})
    # Then the page is shown again (PRG) with a message and erin in the table
    assert response.status_code == 302 and response["Location"] == page(team) + "#members"
    after = client.get(response["Location"])
    assert "Added erin to payments as admin." in after.content.decode()
    assert Membership.objects.get(team=team, user__username="erin").role == "admin"
    assert trail_count(team) == 1


def test_member_add__unknown_person__400_with_the_message_on_the_page(team, people):
    response = signed_in(people["dana"]).post(url("member-add", team), {"user": "nobody", "role": "member"})
    assert response.status_code == 400
    assert "Nothing changed: nobody named &#x27;nobody&#x27;" in response.content.decode()
    assert trail_count(team) == 0


def test_member_role__the_last_admin_demotes_themselves__409_with_a_clear_message(team, people):
    response = signed_in(people["dana"]).post(
        url("member-role", team), {"username": "dana", "role": "member"}
    )
    assert response.status_code == 409
    assert "dana is the last admin of payments" in response.content.decode()
    assert Membership.objects.get(team=team, user=people["dana"]).role == "admin"


def test_member_forms__sent_by_a_member__403_with_a_message_and_nothing_changes(team, people):
    client = signed_in(people["carol"])
    for name, data in [
        ("member-role", {"username": "carol", "role": "admin"}),
        ("member-add", {"user": "dana", "role": "admin"}),
        ("member-remove", {"username": "dana"}),
        ("options", {"admins_may_approve": "on"}),
        ("group-create", {"name": "Mine"}),
        # an invalid form is refused as a member's, not explained
        ("group-rename", {"group": "compliance"}),
    ]:
        response = client.post(url(name, team), data)
        assert response.status_code == 403, name
        assert "only an admin of payments may change its settings" in response.content.decode()
    assert Membership.objects.get(team=team, user=people["carol"]).role == "member"
    assert trail_count(team) == 0


def test_member_forms__sent_by_an_outsider__404(team, people):
    response = signed_in(UserFactory()).post(url("member-remove", team), {"username": "carol"})
    assert response.status_code == 404
    assert Membership.objects.filter(team=team, user=people["carol"]).exists()


def test_member_remove__revokes_keys_and_leaves_groups(team, people):
    response = signed_in(people["dana"]).post(url("member-remove", team), {"username": "carol"})
    assert response.status_code == 302
    assert not Membership.objects.filter(team=team, user=people["carol"]).exists()
    assert ApiKey.objects.get(user=people["carol"]).revoked_at is not None
    assert not ApproverGroup.objects.get(team=team, slug="compliance").members.exists()


def test_member_remove__an_admin_removes_themselves__sent_to_the_dashboard(team, people):
    Membership.objects.filter(user=people["carol"]).update(role=Membership.Role.ADMIN)
    response = signed_in(people["dana"]).post(url("member-remove", team), {"username": "dana"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:home")


def test_groups__create_add_rename_take_out_delete_through_the_forms(team, people):
    client = signed_in(people["dana"])
    steps = [
        ("group-create", {"name": "Risk office", "slug": ""}, "#group-risk-office"),
        ("group-member-add", {"group": "risk-office", "username": "carol"}, "#group-risk-office"),
        ("group-rename", {"group": "risk-office", "name": "Risk"}, "#group-risk-office"),
        ("group-member-remove", {"group": "risk-office", "username": "carol"}, "#group-risk-office"),
        ("group-delete", {"group": "risk-office"}, "#groups"),
    ]
    for name, data, anchor in steps:
        response = client.post(url(name, team), data)
        assert (response.status_code, response["Location"]) == (302, page(team) + anchor), name
    assert not ApproverGroup.objects.filter(team=team, slug="risk-office").exists()
    assert trail_count(team) == 5


def test_group_member_add__no_such_group__404_message(team, people):
    response = signed_in(people["dana"]).post(
        url("group-member-add", team), {"group": "nope", "username": "carol"}
    )
    assert response.status_code == 404
    assert "payments has no approver group &#x27;nope&#x27;" in response.content.decode()


def test_options__checkboxes__saved_and_unchecked_means_off(team, people):
    client = signed_in(people["dana"])
    client.post(url("options", team), {"admins_may_approve": "on", "require_policy_review": "on"})
    client.post(url("options", team), {"require_policy_review": "on"})
    team.refresh_from_db()
    assert (team.admins_may_approve, team.require_policy_review) == (False, True)
    assert trail_count(team) == 2


def test_key_revoke__a_members_key__revoked_and_listed_as_revoked(team, people):
    key = ApiKey.objects.get(user=people["carol"])
    client = signed_in(people["dana"])
    response = client.post(reverse("team_settings:key-revoke", args=[team.slug, key.id]))
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "revoked" in client.get(page(team)).content.decode()


def test_pages__methods__forms_only_post_and_page_only_get(team, people):
    client = signed_in(people["dana"])
    assert client.post(page(team)).status_code == 405
    assert client.get(url("member-add", team)).status_code == 405


def test_settings_page__everyone_already_in_a_group__offers_no_one_to_add(team, people):
    # Given compliance holding every member but dana, and a second group holding both
    both = ApproverGroupFactory(team=team, slug="ops", name="Ops")
    both.members.add(people["dana"], people["carol"])
    # When dana opens the page
    html = signed_in(people["dana"]).get(page(team)).content.decode()
    # Then compliance offers dana alone, and ops offers nobody (no empty form)
    assert '<select name="username" id="add-to-compliance">' in html
    assert (
        '<option value="dana">dana</option>' in html.split('id="add-to-compliance"')[1].split("</select>")[0]
    )
    assert 'id="add-to-ops"' not in html
