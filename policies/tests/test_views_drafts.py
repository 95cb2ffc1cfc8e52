"""Drafts awaiting review on the policies page: listed to members, decided by team admins only,
never by the person who proposed them, once."""

from __future__ import annotations

import pytest
from django.urls import reverse

from policies.models import PolicyDraft, RuleSetVersion
from policies.services import policy_draft_create, rule_set_version_create, rule_set_version_publish
from policies.tests.test_views import V1, client_for, page_url, text_of
from tenancy.actor import Actor
from tests.factories import BY_TESTS, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

PROPOSED = [{"id": "no_sms", "name": "no_sms", "action": "block", "tools": ["send_sms"]}]


@pytest.fixture
def team():
    team = TeamFactory(slug="payments", name="Payments")
    rule_set_version_publish(version=rule_set_version_create(team=team, source_text=V1), actor=BY_TESTS)
    return team


def propose(team, by=None, rules=PROPOSED, name="Stop SMS") -> PolicyDraft:
    return policy_draft_create(
        team_id=team.id, name=name, rules=rules, actor=Actor.person(by) if by is not None else None
    )


def approve_url(team, draft) -> str:
    return reverse("policies:draft-approve", args=[team.slug, draft.id])


def reject_url(team, draft) -> str:
    return reverse("policies:draft-reject", args=[team.slug, draft.id])


def test_page__open_drafts__listed_with_proposer_and_rules_buttons_only_for_admins(team, alice, dana):
    draft = propose(team, by=alice)
    decided = propose(team, by=alice, name="Old idea")
    decided.status, decided.decided_at = PolicyDraft.Status.REJECTED, decided.created_at
    decided.save()
    member_view = client_for(alice).get(page_url(team)).content.decode()
    section = member_view.split('id="drafts"', 1)[1].split('id="editor"', 1)[0]
    assert "Stop SMS" in section and "Proposed by alice" in section and "send_sms" in section
    assert "Old idea" not in section  # decided drafts are not waiting
    assert approve_url(team, draft) not in section
    admin_view = client_for(dana).get(page_url(team)).content.decode()
    assert approve_url(team, draft) in admin_view and reject_url(team, draft) in admin_view


def test_approve__member__403_and_the_draft_stays_open(team, alice):
    draft = propose(team)
    response = client_for(alice).post(approve_url(team, draft))
    assert response.status_code == 403
    assert "Only team admins can approve or reject policy drafts." in text_of(response)
    draft.refresh_from_db()
    assert draft.status == PolicyDraft.Status.DRAFT
    assert RuleSetVersion.objects.get(team=team, is_active=True).number == 1


def test_approve__admin_who_proposed_it__refused_four_eyes(team, dana):
    draft = propose(team, by=dana)
    response = client_for(dana).post(approve_url(team, draft))
    assert response.status_code == 403
    assert "You proposed this draft, so someone else has to approve it (four-eyes" in text_of(response)
    draft.refresh_from_db()
    assert draft.status == PolicyDraft.Status.DRAFT


def test_approve__another_admin__publishes_the_merged_version(team, alice, dana):
    draft = propose(team, by=alice)
    response = client_for(dana).post(approve_url(team, draft), follow=True)
    active = RuleSetVersion.objects.get(team=team, is_active=True)
    assert active.number == 2
    assert [r["id"] for r in active.document["rules"]] == ["bucket_allowlist", "no_sms"]
    draft.refresh_from_db()
    assert (draft.status, draft.decided_by_user, draft.result_version) == ("approved", dana, active)
    assert response.redirect_chain[-1][0] == reverse("policies:version", args=[team.slug, 2])
    assert "Approved draft “Stop SMS”: published as version 2, now active." in text_of(response)


def test_approve__already_decided__409_message(team, alice, dana):
    draft = propose(team, by=alice)
    client_for(dana).post(approve_url(team, draft))
    response = client_for(dana).post(approve_url(team, draft))
    assert response.status_code == 409
    assert "already approved" in text_of(response)
    assert RuleSetVersion.objects.filter(team=team).count() == 2


def test_reject__admin__closes_it_with_the_reason(team, alice, dana):
    draft = propose(team, by=alice)
    response = client_for(dana).post(reject_url(team, draft), {"reason": "SMS is fine"}, follow=True)
    draft.refresh_from_db()
    assert (draft.status, draft.rejection_reason, draft.decided_by_user) == ("rejected", "SMS is fine", dana)
    assert "Rejected draft “Stop SMS”." in text_of(response)
    assert RuleSetVersion.objects.filter(team=team).count() == 1


def test_reject__member__403_and_the_draft_stays_open(team, alice):
    draft = propose(team)
    assert client_for(alice).post(reject_url(team, draft)).status_code == 403
    draft.refresh_from_db()
    assert draft.status == PolicyDraft.Status.DRAFT


@pytest.mark.parametrize("action", ["draft-approve", "draft-reject"])
def test_decide__another_teams_draft_or_non_member__404(team, dana, action):
    other_team = TeamFactory()
    rule_set_version_publish(version=rule_set_version_create(team=other_team, source_text=V1), actor=BY_TESTS)
    foreign = propose(other_team)
    # a draft of another team, reached through this team's URL
    assert (
        client_for(dana).post(reverse(f"policies:{action}", args=[team.slug, foreign.id])).status_code == 404
    )
    # this team's draft, by someone who is not a member
    mine = propose(team)
    assert (
        client_for(UserFactory()).post(reverse(f"policies:{action}", args=[team.slug, mine.id])).status_code
        == 404
    )
    assert PolicyDraft.objects.filter(status=PolicyDraft.Status.DRAFT).count() == 2
