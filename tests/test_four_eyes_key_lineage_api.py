"""Four-eyes across keys minted by keys: whoever holds a key can mint more (POST /v1/api-keys, a
project's first key), so every key of one lineage, and the person behind it, count as one actor.
A key never publishes what another key of its lineage uploaded, and a person never publishes
on the page what a key minted from theirs uploaded."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from policies.models import PolicyDraft, RuleSetPublication, RuleSetVersion
from tenancy.models import ApiKey, Membership
from tenancy.services import ALL_SCOPES
from tests.factories import OrganizationFactory, TeamFactory, UserFactory, api_key_for

pytestmark = pytest.mark.django_db

RULES = "rules:\n  - {{name: r{n}, tool: t{n}, action: deny}}\n"
PUBLISHING = ["admin", "policies:write", "policies:publish"]


def api(token: str) -> APIClient:
    return APIClient(HTTP_X_VETO_API_KEY=token)


def upload(client: APIClient, n: int) -> int:
    response = client.post("/v1/rule-sets", data=RULES.format(n=n), content_type="application/yaml")
    assert response.status_code == 201, response.content
    return response.json()["version"]


def mint(
    client: APIClient, name: str, *, scopes: list[str] = PUBLISHING, project_id: str | None = None
) -> str:
    body: dict[str, object] = {"name": name, "scopes": scopes}
    if project_id is not None:
        body["projectId"] = project_id
    response = client.post("/v1/api-keys", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["key"]


def assert_four_eyes_refused(response, team) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "four_eyes_required"
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()
    assert not RuleSetPublication.objects.filter(team=team).exists()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def personal_key_from_the_page(user, team) -> str:
    """A key with every scope made on "My API keys", as a team admin would."""
    response = signed_in(user).post(
        "/dashboard/api-keys/", {"name": "laptop", "team": team.slug, "scopes": list(ALL_SCOPES)}
    )
    assert response.status_code == 201, response.content
    return re.search(r'value="(vk_[^"]+)"', response.content.decode()).group(1)


@pytest.fixture
def team():
    return TeamFactory(slug="payments", name="Payments")


@pytest.fixture
def dana(team):
    user = UserFactory(username="dana")
    Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    return user


# --- 1: a team key and the keys it minted -----------------------------------------------------


def test_rule_set_publish__key_minted_by_the_uploading_key__403_four_eyes_required(team):
    # Given version 1 uploaded by a key holding every scope (as the demo key does)
    uploader = api(api_key_for(team, name="demo key"))
    number = upload(uploader, 1)
    # And a key that key minted
    minted = api(mint(uploader, "b"))

    # When the minted key publishes it
    response = minted.post(f"/v1/rule-sets/{number}/publish")

    # Then it is the same actor: refused, nothing published
    assert_four_eyes_refused(response, team)


@pytest.mark.parametrize("relative", ["grandchild", "sibling", "nephew"])
@pytest.mark.parametrize("child_uploads", [True, False])
def test_rule_set_publish__any_two_keys_of_one_lineage__403_four_eyes_required(team, relative, child_uploads):
    # Given a root key, a key it minted (child), and another key of that lineage
    root = api(api_key_for(team, name="root"))
    child = mint(root, "child")
    if relative == "grandchild":
        other = mint(api(child), "grandchild")
    elif relative == "sibling":
        other = mint(root, "sibling")
    else:
        other = mint(api(mint(root, "sibling")), "nephew")
    uploader, publisher = (child, other) if child_uploads else (other, child)
    number = upload(api(uploader), 1)

    # When the other one publishes it
    response = api(publisher).post(f"/v1/rule-sets/{number}/publish")

    # Then refused
    assert_four_eyes_refused(response, team)


def test_rule_set_publish__root_key_publishes_what_its_minted_key_uploaded__403(team):
    # Given a version uploaded by a key the publishing key minted
    root = api(api_key_for(team, name="root"))
    number = upload(api(mint(root, "ci")), 1)
    # When the minting key publishes it, Then refused
    assert_four_eyes_refused(root.post(f"/v1/rule-sets/{number}/publish"), team)


def test_rule_set_publish__key_of_another_lineage__published(team):
    # Given a version uploaded by a key minted from one operator-made key
    number = upload(api(mint(api(api_key_for(team, name="ci root")), "ci")), 1)
    # When a key minted from another operator-made key publishes it
    response = api(mint(api(api_key_for(team, name="release root")), "release")).post(
        f"/v1/rule-sets/{number}/publish"
    )
    # Then someone else read it: published
    assert response.status_code == 200, response.content
    assert response.json()["isActive"] is True


def test_rule_set_publish__project_key_and_a_key_its_creator_minted_there__403(team):
    # Given a key that creates a project (its first key comes back) and mints a key in it
    creator = api(api_key_for(team, name="org admin"))
    organization_id = str(team.organization_id)
    created = creator.post(
        "/v1/projects",
        data=json.dumps({"organizationId": organization_id, "name": "Billing"}),
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    project = created.json()
    first_key = project["apiKey"]
    other = mint(creator, "billing release", project_id=project["id"])
    billing = ApiKey.objects.get(name="billing release").team

    # When the project's first key uploads and the creator's other key publishes there
    number = upload(api(first_key), 1)
    response = api(other).post(f"/v1/rule-sets/{number}/publish")

    # Then both came from the creator's key: refused
    assert_four_eyes_refused(response, billing)


# --- 2: a team admin's personal key and the team key it minted -------------------------------


@pytest.mark.parametrize("uploads_with", ["personal", "minted"])
def test_rule_set_publish__personal_key_and_the_team_key_it_minted__403(team, dana, uploads_with):
    # Given dana's personal key with every scope (My API keys) and a team key it minted
    personal = personal_key_from_the_page(dana, team)
    minted = mint(api(personal), "ci")
    assert ApiKey.objects.get(name="ci").user_id is None  # a team's key, not dana's personal one
    uploader, publisher = (personal, minted) if uploads_with == "personal" else (minted, personal)
    number = upload(api(uploader), 1)

    # When the other of the two publishes it
    response = api(publisher).post(f"/v1/rule-sets/{number}/publish")

    # Then it is dana both times: refused
    assert_four_eyes_refused(response, team)


def test_rule_set_publish__key_minted_by_a_key_minted_by_her_personal_key__403(team, dana):
    # Given a team key minted by a team key that dana's personal key minted
    grandchild = mint(api(mint(api(personal_key_from_the_page(dana, team)), "ci")), "nightly")
    number = upload(api(grandchild), 1)
    # When another of dana's keys publishes it, Then refused
    other_personal = personal_key_from_the_page(dana, team)
    assert_four_eyes_refused(api(other_personal).post(f"/v1/rule-sets/{number}/publish"), team)


# --- 3: a review team, the minted key uploads, its minter publishes on the page ---------------


def test_policies_page_publish__version_uploaded_by_a_key_her_personal_key_minted__refused(dana):
    # Given a team that requires a person's review, and a team key minted by dana's personal key
    team = dana.memberships.get().team
    team.require_policy_review = True
    team.save(update_fields=["require_policy_review"])
    minted = mint(api(personal_key_from_the_page(dana, team)), "ci", scopes=["policies:write"])
    number = upload(api(minted), 1)
    publish_url = reverse("policies:version-publish", args=[team.slug, number])

    # When dana opens the version and publishes it as herself on the policies page
    page = signed_in(dana).get(reverse("policies:version", args=[team.slug, number])).content.decode()
    response = signed_in(dana).post(publish_url)

    # Then the page offers no button, and the publish is refused: her key wrote it
    assert 'action="' + publish_url + '"' not in page
    assert "someone else has to publish it" in page
    assert response.status_code == 403
    assert not RuleSetVersion.objects.filter(team=team, is_active=True).exists()
    assert not RuleSetPublication.objects.filter(team=team).exists()


def test_policies_page_publish__version_uploaded_by_a_key_another_admin_minted__published(dana):
    # Given a review team and a version uploaded by a key bob's personal key minted
    team = dana.memberships.get().team
    team.require_policy_review = True
    team.save(update_fields=["require_policy_review"])
    bob = UserFactory(username="bob")
    Membership.objects.create(user=bob, team=team, role=Membership.Role.ADMIN)
    number = upload(api(mint(api(personal_key_from_the_page(bob, team)), "ci", scopes=["policies:write"])), 1)
    # When dana publishes it on the page, Then someone else read it: it is active
    response = signed_in(dana).post(reverse("policies:version-publish", args=[team.slug, number]))
    assert response.status_code in (200, 302), response.content
    assert RuleSetVersion.objects.get(team=team, number=number).is_active


def test_api_key_create__by_a_key__records_the_minting_key_and_its_person(team, dana):
    # Given dana's personal key
    personal = personal_key_from_the_page(dana, team)
    personal_key = ApiKey.objects.get(name="laptop")
    # When it mints a key, and that key mints another, in another team of the organization too
    child = mint(api(personal), "ci")
    mint(api(child), "nightly")
    # Then each records the key that minted it, dana, and the lineage of her personal key
    ci, nightly = ApiKey.objects.get(name="ci"), ApiKey.objects.get(name="nightly")
    assert (ci.created_by_api_key_id, ci.created_by_id, ci.user_id) == (personal_key.id, dana.id, None)
    assert (nightly.created_by_api_key_id, nightly.created_by_id) == (ci.id, dana.id)
    assert ci.lineage == nightly.lineage == personal_key.lineage == personal_key.id


def test_project_create__first_key__minted_by_the_calling_key(team):
    # Given an operator-made key of an organization
    OrganizationFactory()  # another organization, never involved
    creator_token = api_key_for(team, name="org admin")
    creator = ApiKey.objects.get(name="org admin")
    # When it creates a project
    response = api(creator_token).post(
        "/v1/projects",
        data=json.dumps({"organizationId": str(team.organization_id), "name": "Billing"}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    # Then the project's first key came from it
    first = ApiKey.objects.get(team_id=response.json()["id"])
    assert (first.created_by_api_key_id, first.lineage) == (creator.id, creator.id)


# --- policy drafts: approving one publishes it, under the same rule ---------------------------

PROPOSED = [{"id": "cap", "name": "cap", "action": "block", "tools": ["transfer"]}]


def propose(client: APIClient) -> str:
    response = client.post(
        "/v1/policy-drafts",
        data=json.dumps({"name": "cap", "rules": PROPOSED}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_policy_draft_approve__key_minted_by_the_proposing_key__403_and_the_draft_stays_open(team):
    # Given a draft an agent's key proposed, and a key that agent's key minted
    agent = api(api_key_for(team, name="agent"))
    draft_id = propose(agent)
    # When the minted key approves it
    response = api(mint(agent, "reviewer")).post(f"/v1/policy-drafts/{draft_id}/approve")
    # Then refused, and nothing was published
    assert (response.status_code, response.json()["error"]["code"]) == (403, "four_eyes_required")
    assert PolicyDraft.objects.get().status == "draft"
    assert not RuleSetVersion.objects.filter(team=team).exists()


def test_policies_page_draft_approve__proposed_by_a_key_her_personal_key_minted__refused(team, dana):
    # Given a draft proposed by a team key that dana's personal key minted
    draft_id = propose(api(mint(api(personal_key_from_the_page(dana, team)), "agent")))
    # When dana approves it on the policies page
    response = signed_in(dana).post(reverse("policies:draft-approve", args=[team.slug, draft_id]))
    # Then refused: her key proposed it
    assert response.status_code == 403
    assert PolicyDraft.objects.get().status == "draft"
    assert not RuleSetVersion.objects.filter(team=team).exists()
