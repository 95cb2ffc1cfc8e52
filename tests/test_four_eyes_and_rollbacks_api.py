"""Through the API: whoever uploaded a rule-set version or proposed a policy draft (a person or
a key, or a person's key) never publishes or approves it (403 ``four_eyes_required``); and a
rollback is publishing a version that was active before, while a draft's first publish is a
publish whatever its number (the response, the history and the trail say the same)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from policies.models import PolicyDraft, RuleSetPublication, RuleSetVersion
from policies.services import rule_set_version_create, rule_set_version_publish
from tenancy.actor import Actor
from tenancy.models import ApiKey, Membership
from tenancy.services import ALL_SCOPES, api_key_create
from tests.factories import BY_TESTS, TeamFactory, UserFactory, api_key_for, policy_draft_for

pytestmark = pytest.mark.django_db

RULES = "rules:\n  - {{name: r{n}, tool: t{n}, action: deny}}\n"
PROPOSED = [{"id": "cap", "name": "cap", "action": "block", "tools": ["transfer"]}]


def api(token: str) -> APIClient:
    return APIClient(HTTP_X_VETO_API_KEY=token)


def upload(client: APIClient, n: int) -> int:
    response = client.post("/v1/rule-sets", data=RULES.format(n=n), content_type="application/yaml")
    assert response.status_code == 201, response.content
    return response.json()["version"]


def key_of(team, person, name: str = "personal") -> str:
    """A key that belongs to ``person``: they created it and it is theirs."""
    key, token = api_key_create(team=team, name=name, scopes=ALL_SCOPES, created_by=person)
    ApiKey.objects.filter(pk=key.pk).update(user=person)
    return token


@pytest.fixture
def team():
    return TeamFactory()


# --- four-eyes ---------------------------------------------------------------------------------


def test_rule_set_publish__the_key_that_uploaded_it__403_four_eyes_required_and_nothing_published(team):
    # Given a version uploaded by a key that may also publish
    ci = api(api_key_for(team, name="ci"))
    number = upload(ci, 1)

    # When the same key publishes it
    response = ci.post(f"/v1/rule-sets/{number}/publish")

    # Then four-eyes refuses it: nothing is active, nothing recorded
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "four_eyes_required"
    assert "wrote version 1, so someone else has to publish it" in error["message"]
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()
    assert not RuleSetPublication.objects.filter(team=team).exists()
    assert not AuditEvent.objects.filter(team=team).exists()


def test_rule_set_publish__another_key__published(team):
    # Given a version uploaded by one key
    number = upload(api(api_key_for(team, name="ci")), 1)
    # When another key publishes it, Then it is active
    response = api(api_key_for(team, name="release")).post(f"/v1/rule-sets/{number}/publish")
    assert response.status_code == 200, response.content
    assert response.json()["isActive"] is True


def test_rule_set_publish__personal_key_of_the_author__403_four_eyes_required(team):
    # Given a version dana wrote on the policies page, and a key of dana's
    dana = UserFactory(username="dana")
    Membership.objects.create(user=dana, team=team, role=Membership.Role.ADMIN)
    version = rule_set_version_create(team=team, source_text=RULES.format(n=1), author=Actor.person(dana))

    # When dana's key publishes it
    response = api(key_of(team, dana)).post(f"/v1/rule-sets/{version.number}/publish")

    # Then it is dana publishing her own version: refused
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "four_eyes_required"
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()


def test_rule_set_publish__two_keys_of_one_person__403_four_eyes_required(team):
    # Given a version uploaded with one of dana's keys
    dana = UserFactory(username="dana")
    Membership.objects.create(user=dana, team=team, role=Membership.Role.ADMIN)
    number = upload(api(key_of(team, dana, "laptop")), 1)
    # When another of her keys publishes it, Then it is still dana: refused
    response = api(key_of(team, dana, "ci")).post(f"/v1/rule-sets/{number}/publish")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "four_eyes_required")


def test_policy_draft_approve__the_key_that_proposed_it__403_four_eyes_required_and_the_draft_stays_open(
    team,
):
    # Given a draft proposed by a key that may also approve (the demo key holds every scope)
    agent = api(api_key_for(team, name="demo key"))
    created = agent.post(
        "/v1/policy-drafts",
        data=json.dumps({"name": "cap", "rules": PROPOSED}),
        content_type="application/json",
    )
    assert created.status_code == 201, created.content

    # When the same key approves it
    response = agent.post(f"/v1/policy-drafts/{created.json()['id']}/approve")

    # Then four-eyes refuses it, and nothing was published
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "four_eyes_required"
    assert "proposed this draft, so someone else has to approve it" in response.json()["error"]["message"]
    assert PolicyDraft.objects.get().status == "draft"
    assert not RuleSetVersion.objects.filter(team=team).exists()


def test_policy_draft_approve__personal_key_of_the_proposer__403_four_eyes_required(team):
    # Given a draft alice proposed on the dashboard, and a key of alice's
    alice = UserFactory(username="alice")
    Membership.objects.create(user=alice, team=team, role=Membership.Role.ADMIN)
    draft = policy_draft_for(team, PROPOSED, user=alice)
    # When alice's key approves it, Then it is alice approving her own draft: refused
    response = api(key_of(team, alice)).post(f"/v1/policy-drafts/{draft.id}/approve")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "four_eyes_required")
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_policy_draft_approve__another_key__published(team):
    # Given a draft an agent's key proposed
    agent = api(api_key_for(team, name="agent"))
    draft_id = agent.post(
        "/v1/policy-drafts",
        data=json.dumps({"name": "cap", "rules": PROPOSED}),
        content_type="application/json",
    ).json()["id"]
    # When a reviewer's key approves it, Then it is published
    response = api(api_key_for(team, name="reviewer")).post(f"/v1/policy-drafts/{draft_id}/approve")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["ruleSetVersion"]) == ("approved", 1)


# --- rollback or publish -----------------------------------------------------------------------


def test_rule_set_publish__never_published_draft_with_an_older_number__a_publish_in_response_history_and_trail(
    team,
):
    # Given v1 published, drafts v2 and v3 never published, then v4 published
    ci, release = api(api_key_for(team, name="ci")), api(api_key_for(team, name="release"))
    for n in (1, 2, 3, 4):
        upload(ci, n)
    assert release.post("/v1/rule-sets/1/publish").status_code == 200
    assert release.post("/v1/rule-sets/4/publish").status_code == 200

    # When the never-published draft v3 is published
    response = release.post("/v1/rule-sets/3/publish")

    # Then it is a publish (not a rollback) in the response, the history and the trail
    assert response.status_code == 200, response.content
    assert (response.json()["publication"]["kind"], response.json()["publication"]["previousVersion"]) == (
        "publish",
        4,
    )
    history = release.get("/v1/rule-sets").json()["publications"]
    assert [(p["kind"], p["version"]) for p in history] == [("publish", 3), ("publish", 4), ("publish", 1)]
    trail = [
        json.loads(e.record)["details"] for e in AuditEvent.objects.filter(team=team).order_by("sequence")
    ]
    assert [(d["publication"], d["version"]) for d in trail] == [
        ("publish", 1),
        ("publish", 4),
        ("publish", 3),
    ]

    # And going back to v4, which was active before, is a rollback, as is going back to v1
    assert release.post("/v1/rule-sets/4/publish").json()["publication"]["kind"] == "rollback"
    assert release.post("/v1/rule-sets/1/publish").json()["publication"]["kind"] == "rollback"
    # while v2, never active, is still a first publish
    assert release.post("/v1/rule-sets/2/publish").json()["publication"]["kind"] == "publish"


def test_rule_set_publish__service__kind_follows_whether_the_version_was_active_before(team):
    # Given v1 and v2 published in turn, and a draft v3 saved before v4 was published
    versions = [rule_set_version_create(team=team, source_text=RULES.format(n=n)) for n in (1, 2, 3, 4)]
    kinds = [rule_set_version_publish(version=versions[i], actor=BY_TESTS).kind for i in (0, 1, 3)]
    # When v3 (never active) and then v2 (active before) are published
    kinds += [rule_set_version_publish(version=versions[i], actor=BY_TESTS).kind for i in (2, 1)]
    # Then only going back to v2 is a rollback
    assert kinds == ["publish", "publish", "publish", "publish", "rollback"]
