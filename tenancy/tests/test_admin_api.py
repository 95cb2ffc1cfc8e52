"""The SDK's tenancy admin calls through Django/DRF: scopes and isolation."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import OrganizationFactory, TeamFactory, UserFactory, api_key_for, personal_api_key_for

pytestmark = pytest.mark.django_db


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_VETO_API_KEY=token)
    return client


def test_projects__a_key_sees_its_own_team_and_what_it_created_only():
    mine, theirs = TeamFactory(), TeamFactory()
    client = client_for(api_key_for(mine))
    created = client.post(
        "/v1/projects", {"organizationId": str(mine.organization_id), "name": "second"}, format="json"
    )
    assert created.status_code == 201
    listed = {p["id"] for p in client.get("/v1/projects").json()["data"]}
    assert listed == {str(mine.id), created.json()["id"]}
    assert str(theirs.id) not in listed


def test_projects__creating_in_another_organization__404():
    mine, stranger_org = TeamFactory(), OrganizationFactory()
    client = client_for(api_key_for(mine))
    response = client.post(
        "/v1/projects", {"organizationId": str(stranger_org.id), "name": "x"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_api_keys__revoking_another_teams_key__404():
    mine, theirs = TeamFactory(), TeamFactory()
    api_key_for(theirs)
    their_key_id = theirs.api_keys.get().id
    response = client_for(api_key_for(mine)).delete(f"/v1/api-keys/{their_key_id}")
    assert response.status_code == 404
    assert theirs.api_keys.get().revoked_at is None


def test_admin_calls__runtime_only_key__403_naming_the_scope():
    token = api_key_for(TeamFactory(), scopes=("runtime",))
    response = client_for(token).get("/v1/api-keys")
    assert response.status_code == 403
    assert "admin" in response.json()["error"]["message"]


def test_organizations__invalid_body__400_says_which_field():
    response = client_for(api_key_for(TeamFactory())).post("/v1/organizations", {"slug": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("name:")


def test_organizations__duplicate_slug__409():
    OrganizationFactory(slug="taken")
    response = client_for(api_key_for(TeamFactory())).post(
        "/v1/organizations", {"name": "Taken", "slug": "taken"}, format="json"
    )
    assert response.status_code == 409


def test_admin_calls__no_key__401():
    assert APIClient().get("/v1/projects").status_code == 401


def test_api_keys__list__names_a_personal_keys_owner():
    # Given a team's key and alice's personal key in the same team
    team = TeamFactory()
    admin_key = api_key_for(team, name="team key")
    personal_api_key_for(UserFactory(username="alice"), team, name="alice key")
    # When the team's admin key lists the keys
    listed = {k["name"]: k["user"] for k in client_for(admin_key).get("/v1/api-keys").json()["data"]}
    # Then the personal key names its owner, and the team's key nobody
    assert listed == {"team key": None, "alice key": "alice"}
