"""The approval page does not offer Approve to the person whose own request raised the call (the
service would refuse it): it says why, and still offers Deny, which the service allows them."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from approvals.models import Approval
from tenancy.models import ApiKey, Membership
from tests.factories import (
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    personal_api_key_for,
    record_decision,
)

pytestmark = pytest.mark.django_db

APPROVE_BUTTON = 'name="action" value="approve"'
DENY_BUTTON = 'name="action" value="deny"'
WHY = "You raised this call; someone else must approve it."


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def alice(team):
    user = UserFactory(username="alice", email="alice@corp.example")
    ApproverGroupFactory(team=team, slug="compliance").members.add(user)
    return user


def _page(user, approval: Approval, *, fragment: bool = False) -> str:
    client = Client()
    client.force_login(user)
    headers = {"HX-Request": "true"} if fragment else {}
    response = client.get(reverse("approvals:detail", args=[approval.id]), headers=headers)
    assert response.status_code == 200
    return response.content.decode()


# Where and how the call's context names alice: as the service reads it (tenancy/identity.py).
RAISED_FOR_ALICE = {
    "user_id": {"user_id": "alice"},
    "custom.userId, Cyrillic a": {"custom": {"userId": "\u0430lice"}},
    "userId, zero-width space": {"userId": "al\u200bice"},
    "custom.user.email, mixed case": {"custom": {"user": {"email": "Alice@Corp.Example"}}},
}


@pytest.mark.parametrize("context", RAISED_FOR_ALICE.values(), ids=RAISED_FOR_ALICE.keys())
@pytest.mark.parametrize("fragment", [False, True], ids=["page", "htmx panel"])
def test_detail_page__raised_for_the_viewer__no_approve_button_and_says_why(team, alice, context, fragment):
    # Given a pending approval for alice's group, raised on alice's behalf
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], context=context)
    # When alice opens it
    page = _page(alice, approval, fragment=fragment)
    # Then she is told why she cannot approve it, is offered no Approve, and may still deny it
    assert WHY in page
    assert APPROVE_BUTTON not in page
    assert DENY_BUTTON in page


def test_detail_page__raised_with_the_viewers_personal_key__no_approve_button_and_says_why(team, alice):
    # Given an approval raised (its context naming nobody) with alice's own personal key
    key_id = _personal_key_id(alice, team)
    approval_id = uuid.uuid4()
    row = record_decision(team, decision="require_approval", approval_id=approval_id, api_key_id=key_id)
    approval = ApprovalFactory(
        id=approval_id, decision_id=row.id, team=team, approver_groups=["compliance"], context={}
    )
    # When alice opens it
    page = _page(alice, approval)
    # Then it does not offer her Approve, and says why
    assert WHY in page
    assert APPROVE_BUTTON not in page


def _personal_key_id(user, team) -> uuid.UUID:
    personal_api_key_for(user, team, scopes=(ApiKey.Scope.RUNTIME, ApiKey.Scope.APPROVALS_RESOLVE))
    return ApiKey.objects.get(user=user).id


def test_detail_page__raised_for_someone_else__approve_offered(team, alice):
    # Given an approval raised for "alicia" (close to alice, but another person)
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], context={"user_id": "alicia"})
    # When alice opens it
    page = _page(alice, approval)
    # Then she may approve it, with no word about her own request
    assert APPROVE_BUTTON in page
    assert WHY not in page


def test_detail_page__the_raiser_is_no_approver__neither_form_nor_own_request_note(team):
    # Given an approval raised for bob, who is in none of its groups
    bob = UserFactory(username="bob")
    Membership.objects.create(user=bob, team=team, role=Membership.Role.MEMBER)
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], context={"user_id": "bob"})
    # When bob opens it (as a member of the team)
    page = _page(bob, approval)
    # Then he is told it is for the compliance group, not offered any decision
    assert 'id="not-eligible"' in page
    assert DENY_BUTTON not in page
    assert WHY not in page
