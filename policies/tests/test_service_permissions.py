"""The policy services apply their own permission rules (``policies.permissions``), whoever calls
them: here they are called directly, with no page or API view in front, and refuse what the
pages and the API refuse."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from common.errors import NotFound, PermissionDenied
from policies import services
from policies.models import PolicyDraft, RuleSetPublication, RuleSetVersion, ToolPolicy
from policies.permissions import FourEyesRequired, HumanReviewRequired, LooseningNotAllowed
from policies.tests.conftest import member_of
from tenancy.actor import Actor
from tenancy.models import ApiKey, Membership, Team
from tenancy.scopes import MissingScope
from tenancy.services import ALL_SCOPES, api_key_create, personal_api_key_create
from tests.factories import BY_TESTS, TeamFactory, ToolPolicyFactory, as_key, policy_draft_for

pytestmark = pytest.mark.django_db

RULES = "rules:\n  - {name: no_sms, tool: send_sms, action: deny}\n"
PROPOSED = [{"id": "no_email", "name": "no_email", "action": "block", "tools": ["send_email"]}]
LIMIT = [{"argumentName": "amount", "enabled": True, "maximum": 1000}]


def key_of(team, *, scopes=ALL_SCOPES, name: str = "agent") -> ApiKey:
    return api_key_create(team=team, name=name, scopes=scopes)[0]


def nothing_published(team) -> bool:
    return not RuleSetVersion.objects.filter(team=team, is_active=True).exists() and (
        not RuleSetPublication.objects.filter(team=team).exists()
    )


# --- publish -------------------------------------------------------------------------------------


def test_publish_service__admin_publishes_the_version_they_wrote__four_eyes_refused(team, dana):
    # Given a version dana, a team admin, wrote
    version = services.rule_set_version_create(team=team, source_text=RULES, author=Actor.person(dana))
    # When dana publishes it through the service itself (no view checks anything before)
    with pytest.raises(FourEyesRequired) as refused:
        services.rule_set_version_publish(version=version, actor=Actor.person(dana))
    # Then four-eyes refuses it, and nothing is published
    assert "You wrote version 1, so someone else has to publish it" in refused.value.message
    assert nothing_published(team)


def test_publish_service__personal_key_of_the_author__four_eyes_refused(team, dana):
    # Given a version dana wrote, and a personal key of hers with every scope
    version = services.rule_set_version_create(team=team, source_text=RULES, author=Actor.person(dana))
    laptop = personal_api_key_create(user=dana, team=team, name="laptop", scopes=ALL_SCOPES)[0]
    # When the key publishes it, Then it is dana publishing her own version: refused
    with pytest.raises(FourEyesRequired):
        services.rule_set_version_publish(version=version, actor=as_key(laptop))
    assert nothing_published(team)


def test_publish_service__another_admin__published_under_their_name_and_address(team, alice, dana):
    # Given a version alice wrote
    version = services.rule_set_version_create(team=team, source_text=RULES, author=Actor.person(alice))
    # When dana publishes it
    publication = services.rule_set_version_publish(
        version=version, actor=Actor.person(dana, remote_addr="203.0.113.4")
    )
    # Then it is active, recorded as dana's, and the trail has where from
    assert (publication.actor_user, publication.actor_name) == (dana, "dana")
    assert RuleSetVersion.objects.get(team=team, is_active=True).number == 1
    event = AuditEvent.objects.get(team=team, kind=AuditEvent.Kind.RULE_SET_PUBLISHED)
    assert (event.actor_name, json.loads(event.record)["from"]) == ("dana", "203.0.113.4")


def test_publish_service__member_who_is_no_admin__refused(team, alice):
    version = services.rule_set_version_create(team=team, source_text=RULES)
    with pytest.raises(PermissionDenied) as refused:
        services.rule_set_version_publish(version=version, actor=Actor.person(alice))
    assert refused.value.code == "publish_not_allowed"
    assert nothing_published(team)


def test_publish_service__key_without_the_publish_scope__refused(team):
    version = services.rule_set_version_create(team=team, source_text=RULES)
    writer = key_of(team, scopes=(ApiKey.Scope.POLICIES_WRITE,))
    with pytest.raises(MissingScope):
        services.rule_set_version_publish(version=version, actor=as_key(writer))
    assert nothing_published(team)


def test_publish_service__key_of_another_team__not_found(team):
    version = services.rule_set_version_create(team=team, source_text=RULES)
    stranger = key_of(TeamFactory())
    with pytest.raises(NotFound):
        services.rule_set_version_publish(version=version, actor=as_key(stranger))
    assert nothing_published(team)


def test_publish_service__key_on_a_team_that_requires_review__refused(team):
    Team.objects.filter(pk=team.pk).update(require_policy_review=True)
    version = services.rule_set_version_create(team=team, source_text=RULES)
    with pytest.raises(HumanReviewRequired):
        services.rule_set_version_publish(version=version, actor=as_key(key_of(team)))
    assert nothing_published(team)


def test_publish_service__no_actor__refused(team):
    version = services.rule_set_version_create(team=team, source_text=RULES)
    with pytest.raises(PermissionDenied):
        services.rule_set_version_publish(version=version)
    assert nothing_published(team)


def test_publish_service__a_process__published_under_its_name(team):
    version = services.rule_set_version_create(team=team, source_text=RULES)
    publication = services.rule_set_version_publish(version=version, actor=Actor.process("seed_demo"))
    assert (publication.actor_user, publication.actor_api_key_id, publication.actor_name) == (
        None,
        None,
        "seed_demo",
    )


# --- drafts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_draft_services__member_who_is_no_admin__refused_and_the_draft_stays_open(team, alice, decide):
    # Given an active version and a draft someone else proposed
    services.rule_set_version_publish(
        version=services.rule_set_version_create(team=team, source_text=RULES), actor=BY_TESTS
    )
    draft = policy_draft_for(team, PROPOSED)
    # When alice, a plain member, decides it through the service
    with pytest.raises(PermissionDenied) as refused:
        if decide == "approve":
            services.policy_draft_approve(draft=draft, actor=Actor.person(alice))
        else:
            services.policy_draft_reject(draft=draft, reason="no", actor=Actor.person(alice))
    # Then refused as the page refuses it, and nothing changed
    assert refused.value.code == "draft_decision_not_allowed"
    draft.refresh_from_db()
    assert draft.status == PolicyDraft.Status.DRAFT


def test_draft_reject_service__key_without_the_publish_scope__refused(team):
    draft = policy_draft_for(team, PROPOSED)
    writer = key_of(team, scopes=(ApiKey.Scope.POLICIES_WRITE,))
    with pytest.raises(MissingScope):
        services.policy_draft_reject(draft=draft, reason="no", actor=as_key(writer))
    draft.refresh_from_db()
    assert draft.status == PolicyDraft.Status.DRAFT


# --- tool policies -------------------------------------------------------------------------------


def test_tool_policy_services__member_who_is_no_admin__refused_and_nothing_changes(team, alice):
    policy = ToolPolicyFactory(team=team, tool_name="transfer", constraints=LIMIT)
    as_alice = Actor.person(alice)
    body = {"toolName": "refund", "mode": "deterministic", "constraints": []}
    for change in (
        lambda: services.tool_policy_create(team_id=team.id, data=body, actor=as_alice),
        lambda: services.tool_policy_update(policy=policy, data={"constraints": []}, actor=as_alice),
        lambda: services.tool_policy_set_active(policy=policy, is_active=False, actor=as_alice),
        lambda: services.tool_policy_delete(policy=policy, actor=as_alice),
    ):
        with pytest.raises(PermissionDenied) as refused:
            change()
        assert refused.value.code == "tool_policy_change_not_allowed"
    assert list(ToolPolicy.objects.filter(team=team).values_list("tool_name", "version", "is_active")) == [
        ("transfer", 1, True)
    ]


def test_tool_policy_update_service__key_with_write_scope_only_loosens__refused(team):
    # Given a policy capping amounts at 1000, and a key that may write but not publish
    policy = ToolPolicyFactory(team=team, tool_name="transfer", constraints=LIMIT)
    writer = as_key(key_of(team, scopes=(ApiKey.Scope.POLICIES_WRITE,)))
    raised = [{"argumentName": "amount", "enabled": True, "maximum": 5000}]
    # When it raises the cap, Then refused (the service decides who may loosen, from the actor)
    with pytest.raises(LooseningNotAllowed):
        services.tool_policy_update(policy=policy, data={"constraints": raised}, actor=writer)
    # And tightening is fine
    lowered = [{"argumentName": "amount", "enabled": True, "maximum": 500}]
    assert (
        services.tool_policy_update(policy=policy, data={"constraints": lowered}, actor=writer).version == 2
    )


def test_tool_policy_create_service__admin__recorded_under_their_name(team):
    admin = member_of(team, Membership.Role.ADMIN, username="erin")
    body = {"toolName": "refund", "mode": "deterministic", "constraints": []}
    policy = services.tool_policy_create(team_id=team.id, data=body, actor=Actor.person(admin))
    assert (policy.tool_name, policy.updated_by_name) == ("refund", "erin")
