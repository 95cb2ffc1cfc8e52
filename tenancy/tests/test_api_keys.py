"""API keys: prefixed random tokens, stored only as a hash, shown once, revocable, scoped."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from common.errors import InvalidInput, PermissionDenied
from tenancy import keys
from tenancy.models import ApiKey
from tenancy.selectors import principal_for_token
from tenancy.services import api_key_create, api_key_create_by_principal, api_key_revoke
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_api_key_create__stores_only_hash_and_prefix():
    team = TeamFactory()
    api_key, token = api_key_create(team=team, name="ci")
    assert token.startswith("vk_") and len(token) > 40
    assert api_key.prefix == token[: keys.PREFIX_LENGTH]
    assert api_key.key_hash == keys.hash_token(token)
    stored = ApiKey.objects.filter(pk=api_key.pk).values()[0]
    assert token not in {str(value) for value in stored.values()}


def test_principal_for_token__valid_key__resolves_to_its_team_and_scopes():
    team = TeamFactory()
    api_key, token = api_key_create(team=team, name="ci", scopes=["runtime"])
    principal = principal_for_token(token)
    assert principal is not None
    assert (principal.team_id, principal.key_id, principal.scopes) == (
        team.id,
        api_key.id,
        frozenset({"runtime"}),
    )


def test_principal_for_token__same_prefix_other_secret__is_refused():
    team = TeamFactory()
    _, token = api_key_create(team=team, name="ci")
    forged = token[: keys.PREFIX_LENGTH] + "A" * (len(token) - keys.PREFIX_LENGTH)
    assert principal_for_token(forged) is None


def test_api_key_revoke__key_stops_working_and_revocation_is_idempotent():
    team = TeamFactory()
    api_key, token = api_key_create(team=team, name="ci")
    api_key_revoke(api_key=api_key)
    api_key_revoke(api_key=api_key)
    assert principal_for_token(token) is None
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None


def test_api_key_create__short_custom_token__refused():
    with pytest.raises(InvalidInput):
        api_key_create(team=TeamFactory(), name="x", token="too-short")


def test_api_key_create__unknown_scope__refused():
    with pytest.raises(InvalidInput) as caught:
        api_key_create(team=TeamFactory(), name="x", scopes=["runtime", "superpowers"])
    assert "superpowers" in caught.value.message


def test_api_key_create_by_principal__cannot_grant_scopes_it_lacks():
    team = TeamFactory()
    _, token = api_key_create(team=team, name="limited", scopes=["runtime", "admin"])
    principal = principal_for_token(token)
    assert principal is not None
    with pytest.raises(PermissionDenied):
        api_key_create_by_principal(
            principal=principal, team=team, name="escalate", scopes=["policies:publish"]
        )


def test_create_api_key_command__prints_the_key_alone_on_its_last_line():
    team = TeamFactory(slug="payments")
    out = io.StringIO()
    call_command(
        "create_api_key", "--team", "payments", "--name", "deploy bot", stdout=out, stderr=io.StringIO()
    )
    token = out.getvalue().strip().splitlines()[-1]
    principal = principal_for_token(token)
    assert principal is not None and principal.team_id == team.id


def test_create_api_key_command__unknown_team__clear_error():
    with pytest.raises(CommandError, match="does not exist"):
        call_command(
            "create_api_key", "--team", "nope", "--name", "x", stdout=io.StringIO(), stderr=io.StringIO()
        )
