"""Tool policies on the team's policies page: every member sees them, team admins create,
replace, (de)activate and delete them (chained in the audit trail under their name, also on a
team that requires review), and bad input is a message on the page, never a 500."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from policies.models import ToolPolicy
from policies.tests.conftest import member_of
from policies.tests.test_views import page_url, text_of
from tenancy.models import Membership
from tests.factories import TeamFactory, ToolPolicyFactory

pytestmark = pytest.mark.django_db

LIMIT = [{"argumentName": "amount", "enabled": True, "maximum": 1000}]
TRANSFER = {"toolName": "transfer_funds", "mode": "deterministic", "constraints": LIMIT}
RAISED = {**TRANSFER, "constraints": [{"argumentName": "amount", "enabled": True, "maximum": 1_000_000}]}


def client_for(user) -> Client:
    client = Client(REMOTE_ADDR="203.0.113.9")
    client.force_login(user)
    return client


def url(name: str, team, policy=None) -> str:
    return reverse(f"policies:tool-policy-{name}", args=[team.slug] + ([policy.id] if policy else []))


def post_body(client: Client, target: str, body: object):
    return client.post(target, {"body": body if isinstance(body, str) else json.dumps(body)})


def changes(team) -> list[tuple[str, str, str | None]]:
    """The team's tool-policy audit entries: (change, actor, from where)."""
    return [
        (json.loads(e.record)["details"]["change"], e.actor_name, json.loads(e.record)["from"])
        for e in AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TOOL_POLICY_CHANGED).order_by(
            "sequence"
        )
    ]


def stored(team) -> list[tuple]:
    return list(
        ToolPolicy.objects.filter(team=team)
        .order_by("tool_name")
        .values_list("tool_name", "version", "is_active", "mode", "constraints", "updated_by_name")
    )


# --- who sees what ---------------------------------------------------------------------------


def test_page__member__lists_tool_policies_without_forms(team, alice):
    # Given a policy someone changed last
    ToolPolicyFactory(
        team=team, tool_name="transfer_funds", constraints=LIMIT, updated_by_name="API key ci (vk_1…)"
    )
    # When a member opens the page
    response = client_for(alice).get(page_url(team))
    # Then it lists the policy with its version, state, mode, constraints and who changed it
    assert response.status_code == 200
    text = text_of(response)
    assert "Tool policies" in text and "transfer_funds" in text
    assert "v1" in text and "active" in text and "Deterministic" in text
    assert "&quot;maximum&quot;: 1000" in response.content.decode()
    assert "API key ci (vk_1…)" in text
    # and no form to change it (every one posts under /policies/tools/)
    assert b"/policies/tools/" not in response.content


def test_page__admin__sees_create_replace_activation_and_delete_forms(team, dana):
    policy = ToolPolicyFactory(team=team, tool_name="transfer_funds", constraints=LIMIT)
    content = client_for(dana).get(page_url(team)).content.decode()
    for target in (
        url("create", team),
        url("replace", team, policy),
        url("deactivate", team, policy),
        url("delete", team, policy),
    ):
        assert f'action="{target}"' in content
    # The replace form starts with the policy in the SDK's shape
    assert "&quot;toolName&quot;: &quot;transfer_funds&quot;" in content


# --- a team admin changes them ---------------------------------------------------------------


@pytest.mark.parametrize("require_review", [False, True], ids=["plain_team", "review_team"])
def test_tool_policy_page__admin_creates_replaces_deactivates_activates_deletes__stored_and_audited(
    dana, require_review
):
    # Given a team admin (on a review team, too: this is where a person makes these changes)
    team = TeamFactory(require_policy_review=require_review)
    member_of(team, Membership.Role.ADMIN, username="dana")
    client = client_for(dana)

    # When they create a policy
    response = post_body(client, url("create", team), TRANSFER)
    # Then it is stored, active, version 1, last changed by them
    assert response.status_code == 302
    assert stored(team) == [("transfer_funds", 1, True, "deterministic", LIMIT, "dana")]
    policy = ToolPolicy.objects.get(team=team)
    assert "Created the policy of transfer_funds" in text_of(client.get(response["Location"]))

    # When they replace it, then deactivate, activate and delete it
    assert post_body(client, url("replace", team, policy), RAISED).status_code == 302
    assert stored(team) == [("transfer_funds", 2, True, "deterministic", RAISED["constraints"], "dana")]
    assert client.post(url("deactivate", team, policy)).status_code == 302
    assert stored(team)[0][1:3] == (2, False)
    assert client.post(url("activate", team, policy)).status_code == 302
    assert stored(team)[0][1:3] == (2, True)
    assert client.post(url("delete", team, policy)).status_code == 302
    assert stored(team) == []

    # Then each change is an entry of the team's trail naming them and where they were
    assert changes(team) == [
        (change, "dana", "203.0.113.9")
        for change in ("created", "updated", "deactivated", "activated", "deleted")
    ]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (
            '{"toolName": "transfer_funds", "mode": ',
            "the body is not JSON: Expecting value (line 1, column 40)",
        ),
        (
            '{"toolName": "t", "mode": "deterministic", "constraints": [{"argumentName": "a", "maximum": NaN}]}',
            "NaN is not a JSON number",
        ),
        ("[" * 50_000 + "]" * 50_000, "nests too deeply"),
        (
            '{"toolName": "t", "mode": "deterministic", "constraints": [{"argumentName": "a\\u0000"}]}',
            "NUL character",
        ),
        (["transfer_funds"], "a policy must be a JSON object"),
        (
            {**TRANSFER, "constraints": [{"argumentName": "amount", "enabled": True, "maximum": "lots"}]},
            "constraints[0].maximum",
        ),
    ],
    ids=["truncated_json", "nan", "too_deep", "nul", "not_an_object", "invalid_constraint"],
)
def test_tool_policy_create__bad_input__400_message_on_the_page_and_nothing_stored(team, dana, body, shown):
    # When an admin submits a body that is not JSON, or not a valid policy
    response = post_body(client_for(dana), url("create", team), body)
    # Then the page answers 400 with the problem (and where it is), keeps the text, stores nothing
    assert response.status_code == 400
    assert "Tool policy not created" in text_of(response)
    assert shown in text_of(response)
    assert stored(team) == []
    assert changes(team) == []


def test_tool_policy_replace__invalid_constraint__400_every_problem_with_its_path_and_policy_unchanged(
    team, dana
):
    policy = ToolPolicyFactory(team=team, tool_name="transfer_funds", constraints=LIMIT)
    before = stored(team)
    bad = {
        **TRANSFER,
        "mode": "psychic",
        "constraints": [{"argumentName": "amount", "enabled": True, "maximum": "lots"}],
    }
    response = post_body(client_for(dana), url("replace", team, policy), bad)
    assert response.status_code == 400
    text = text_of(response)
    assert "Policy of transfer_funds not changed" in text
    assert "mode" in text and "psychic" in text
    assert "constraints[0].maximum" in text
    # and each problem is listed under the form, at its path
    assert '<span class="where">constraints[0].maximum</span>' in response.content.decode()
    assert "&quot;lots&quot;" in response.content.decode()  # the submitted text stays in the form
    assert stored(team) == before
    assert changes(team) == []


def test_tool_policy_create__second_policy_for_the_same_tool__409_and_the_first_unchanged(team, dana):
    ToolPolicyFactory(team=team, tool_name="transfer_funds", constraints=LIMIT)
    before = stored(team)
    response = post_body(client_for(dana), url("create", team), RAISED)
    assert response.status_code == 409
    assert "already exists" in text_of(response)
    assert stored(team) == before
    assert changes(team) == []


# --- who may not -----------------------------------------------------------------------------

WRITES = ["create", "replace", "activate", "deactivate", "delete"]


@pytest.mark.parametrize("name", WRITES)
def test_tool_policy_write__non_admin_member__403_with_a_message_and_nothing_changes(team, alice, name):
    policy = ToolPolicyFactory(
        team=team, tool_name="transfer_funds", constraints=LIMIT, is_active=name != "activate"
    )
    before = stored(team)
    target = url(name, team) if name == "create" else url(name, team, policy)
    response = post_body(
        client_for(alice), target, {**RAISED, "toolName": "send_sms"} if name == "create" else RAISED
    )
    assert response.status_code == 403
    assert "Only team admins can create, change or delete tool policies." in text_of(response)
    assert stored(team) == before
    assert changes(team) == []


@pytest.mark.parametrize("name", WRITES)
def test_tool_policy_write__non_member_or_another_teams_policy__404_and_nothing_changes(team, dana, name):
    # Given an admin of another team, and that team's own policy
    policy = ToolPolicyFactory(
        team=team, tool_name="transfer_funds", constraints=LIMIT, is_active=name != "activate"
    )
    elsewhere = TeamFactory()
    mallory = member_of(elsewhere, Membership.Role.ADMIN, username="mallory")
    before = stored(team)
    body = {**RAISED, "toolName": "send_sms"} if name == "create" else RAISED
    # When the outsider posts to this team, and this team's admin addresses it through the other team
    outsider = post_body(
        client_for(mallory), url(name, team) if name == "create" else url(name, team, policy), body
    )
    # Then both are not found, and nothing changed
    assert outsider.status_code == 404
    if name != "create":
        member_of(elsewhere, Membership.Role.ADMIN, username="dana")
        assert post_body(client_for(dana), url(name, elsewhere, policy), body).status_code == 404
    assert stored(team) == before
    assert changes(team) == []


@pytest.mark.parametrize("name", WRITES)
def test_tool_policy_write__without_csrf_token__403(team, dana, name):
    policy = ToolPolicyFactory(team=team, tool_name="transfer_funds", constraints=LIMIT)
    client = Client(enforce_csrf_checks=True)
    client.force_login(dana)
    target = url(name, team) if name == "create" else url(name, team, policy)
    assert client.post(target, {"body": json.dumps(RAISED)}).status_code == 403
    assert ToolPolicy.objects.get(pk=policy.pk).version == 1
