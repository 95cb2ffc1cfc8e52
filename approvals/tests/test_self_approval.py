"""Nobody approves a call raised on their own behalf: wherever the call's context names them, and
however their name is spelled there (case, width, zero-width characters, look-alike letters)."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from approvals.models import Approval, ApprovalEvent
from approvals.services import NotAnApprover, approval_resolve
from tenancy.actor import Actor
from tenancy.models import ApiKey, Membership
from tests.factories import (
    ApprovalFactory,
    ApproverGroupFactory,
    TeamFactory,
    UserFactory,
    api_key_for,
    personal_api_key_for,
    record_decision,
)

pytestmark = pytest.mark.django_db


def api_key_id_for(team) -> uuid.UUID:
    api_key_for(team)
    return ApiKey.objects.filter(team=team).latest("created_at").id


# Every place the SDK (VetoConfig.custom_context, a call's custom, the user_id option) or an
# API-mode caller puts the caller's identity in the validate body's context.
PLACES = {
    "context.user_id": lambda who: {"user_id": who},
    "context.userId": lambda who: {"user_id": None, "userId": who},
    "context.custom.user_id": lambda who: {"user_id": None, "custom": {"user_id": who}},
    "context.custom.userId": lambda who: {"user_id": None, "custom": {"userId": who}},
    "context.custom.user.email": lambda who: {"custom": {"user": {"email": who}}},
    "context.USER-ID": lambda who: {"USER-ID": who},
}
# alice's username and e-mail, as a reader would take them for hers.
SPELLINGS = {
    "as is": "alice",
    "upper case": "ALICE",
    "zero-width space": "al\u200bice",
    "zero-width joiner": "\u200dalice",
    "Cyrillic a": "\u0430lice",
    "fullwidth": "\uff41\uff4c\uff49\uff43\uff45",
    "digit one for l": "a1ice",
    "e-mail, mixed case": "Alice@Corp.Example",
    "e-mail, Cyrillic o and soft hyphen": "alice@c\u043er\u00adp.example",
    "e-mail, rn for m": "alice@corp.exarnple",
}


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def alice(team):
    user = UserFactory(username="alice", email="alice@corp.example")
    ApproverGroupFactory(team=team, slug="compliance").members.add(user)
    return user


@pytest.mark.parametrize("spelling", SPELLINGS.values(), ids=SPELLINGS.keys())
@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
def test_resolve__raised_for_the_approver_in_any_place_and_spelling__approve_refused(
    team, alice, place, spelling
):
    # Given an approval whose call context names alice (somewhere, somehow spelled)
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], context=place(spelling))

    # When alice approves it
    with pytest.raises(NotAnApprover, match="own request"):
        approval_resolve(approval=approval, actor=Actor.person(alice), action="approve")

    # Then it is still pending, and the refusal is in the trail
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    assert list(approval.events.values_list("action", "actor_name")) == [
        (ApprovalEvent.Action.REFUSED, "alice")
    ]


@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
def test_resolve__raised_for_someone_else__the_approver_approves(team, alice, place):
    # Given an approval raised for "alicia" (close, but another name)
    approval = ApprovalFactory(team=team, approver_groups=["compliance"], context=place("alicia"))

    # When alice approves it, Then it is approved
    assert (
        approval_resolve(approval=approval, actor=Actor.person(alice), action="approve").approval.status
        == "approved"
    )


def test_decide_page__own_request_with_a_look_alike_name__approve_refused_with_a_message(team, alice):
    # Given an approval raised for alice, spelled with a Cyrillic a in context.custom.userId
    approval = ApprovalFactory(
        team=team, approver_groups=["compliance"], context={"custom": {"userId": "\u0430lice"}}
    )
    client = Client()
    client.force_login(alice)

    # When she approves it in the browser
    answer = client.post(reverse("approvals:decide", args=[approval.id]), {"action": "approve"})

    # Then she is told no, and nothing is decided
    assert answer.status_code == 403
    assert "own request" in answer.content.decode()
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING


def raised_with_key(team, key_id) -> Approval:
    """An approval as validate raises it: its decision row keeps the caller's key."""
    approval_id = uuid.uuid4()
    row = record_decision(team, decision="require_approval", approval_id=approval_id, api_key_id=key_id)
    return ApprovalFactory(
        id=approval_id,
        decision_id=row.id,
        team=team,
        approver_groups=["compliance"],
        context={"agent_id": "bot"},
    )


def test_resolve__raised_with_the_approvers_own_personal_key__approve_refused(team, alice):
    # Given an approval raised (context naming nobody) with alice's personal key, which may validate
    Membership.objects.create(user=alice, team=team, role=Membership.Role.ADMIN)
    personal_api_key_for(alice, team, scopes=(ApiKey.Scope.RUNTIME, ApiKey.Scope.APPROVALS_RESOLVE))
    approval = raised_with_key(team, ApiKey.objects.get(user=alice).id)

    # When alice approves it
    with pytest.raises(NotAnApprover, match="own request"):
        approval_resolve(approval=approval, actor=Actor.person(alice), action="approve")

    # Then it is still pending
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING


def test_resolve__raised_with_a_team_key__the_approver_approves(team, alice):
    approval = raised_with_key(team, api_key_id_for(team))

    assert (
        approval_resolve(approval=approval, actor=Actor.person(alice), action="approve").approval.status
        == "approved"
    )
