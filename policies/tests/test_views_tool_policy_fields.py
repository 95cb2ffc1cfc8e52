"""The policies page shows every field of a tool policy: a readable line for its session
constraints, rate limits, output rules and LLM exceptions beside the constraints, and the whole
policy in the replace form's JSON. A bad new field is refused beside the editor at its path;
a team admin may loosen a policy there, also on a team that requires review."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from policies.models import ToolPolicy
from policies.tests.conftest import member_of
from policies.tests.test_views import page_url, text_of
from policies.views.tool_policy_summary import (
    SummaryLine,
    llm_config_summary,
    output_rules_summary,
    rate_limits_summary,
    session_constraints_summary,
    tool_policy_summary,
)
from tenancy.models import Membership
from tests.factories import TeamFactory, ToolPolicyFactory

SESSION = {
    "maxCalls": 5,
    "spendArgument": "amount",
    "budget": 100.0,
    "cumulativeLimits": [{"argumentName": "fee", "maxValue": 10}],
    "counters": {"open_files": {"increment": ["open_file"], "decrement": ["close_file"], "max": 2}},
}
RATE_LIMITS = [
    {"scope": "session", "windowSeconds": 60, "maxCalls": 10},
    {"scope": "global", "windowSeconds": 86400, "maxCalls": 1000},
]
OUTPUT_RULES = [
    {
        "id": "no_iban",
        "name": "Block IBANs",
        "action": "block",
        "output_conditions": [{"field": "output", "operator": "matches", "value": "[A-Z]{2}[0-9]{2}"}],
    },
    {
        "id": "mask",
        "name": "Mask e-mails",
        "action": "redact",
        "enabled": False,
        "output_conditions": [{"field": "output", "operator": "matches", "value": "@"}],
    },
]
LLM_CONFIG = {
    "description": "Moves money",
    "exceptions": ["a refund", "a correction", "a transfer between the customer's own accounts"],
    "preferredModel": "gpt-4o-mini",
}
LIMIT = [{"argumentName": "amount", "enabled": True, "maximum": 1000}]


# --- the lines, without a database ---------------------------------------------------------------


def test_session_constraints_summary__every_kind_of_limit__one_line_naming_each():
    assert session_constraints_summary(SESSION) == (
        "budget 100 on amount, max 5 calls, fee ≤ 10 in total, "
        "counters open_files ≤ 2 (+open_file, −close_file); over a limit: denied"
    )
    assert session_constraints_summary(
        {"maxCalls": 1, "maxAction": "require_approval", "counters": {"c": {"increment": ["t"]}}}
    ) == ("max 1 call, counters c (counted, no max) (+t); over a limit: held for approval")


def test_rate_limits_output_rules_llm_summaries__read_as_a_person_says_them():
    assert rate_limits_summary(RATE_LIMITS) == "10/60s per session, 1000/86400s overall"
    assert output_rules_summary(OUTPUT_RULES) == "2 (block, redact; 1 disabled)"
    assert llm_config_summary(LLM_CONFIG, mode="llm") == "3 exceptions, model gpt-4o-mini"
    assert llm_config_summary({**LLM_CONFIG, "exceptions": ["x"]}, mode="deterministic") == (
        "1 exception, model gpt-4o-mini (not used: the policy is deterministic)"
    )


def test_tool_policy_summary__only_constraints__no_lines():
    assert tool_policy_summary(ToolPolicy(tool_name="t", constraints=LIMIT)) == []


def test_tool_policy_summary__every_field__a_line_each_in_the_order_a_call_meets_them():
    policy = ToolPolicy(
        tool_name="t",
        mode=ToolPolicy.Mode.LLM,
        constraints=LIMIT,
        session_constraints=SESSION,
        rate_limits=RATE_LIMITS,
        output_rules=OUTPUT_RULES,
        llm_config=LLM_CONFIG,
    )
    assert [line.label for line in tool_policy_summary(policy)] == [
        "Session",
        "Rate limits",
        "LLM",
        "Output rules",
    ]
    assert tool_policy_summary(policy)[1] == SummaryLine(
        "Rate limits", "10/60s per session, 1000/86400s overall"
    )


# --- the page ----------------------------------------------------------------------------------


def client_for(user) -> Client:
    client = Client(REMOTE_ADDR="203.0.113.9")
    client.force_login(user)
    return client


def replace_url(team, policy) -> str:
    return reverse("policies:tool-policy-replace", args=[team.slug, policy.id])


def full_policy(team) -> ToolPolicy:
    return ToolPolicyFactory(
        team=team,
        tool_name="transfer_funds",
        constraints=LIMIT,
        session_constraints=SESSION,
        rate_limits=RATE_LIMITS,
        output_rules=OUTPUT_RULES,
    )


@pytest.mark.django_db
def test_page__member__sees_a_line_for_each_field_beside_the_constraints(team, alice):
    # Given a policy with session constraints, rate limits and output rules
    full_policy(team)
    # When a member opens the page
    text = text_of(client_for(alice).get(page_url(team)))
    # Then each field is one line they can read
    assert "Session: budget 100 on amount, max 5 calls, fee ≤ 10 in total" in text
    assert "counters open_files ≤ 2 (+open_file, −close_file)" in text
    assert "Rate limits: 10/60s per session, 1000/86400s overall" in text
    assert "Output rules: 2 (block, redact; 1 disabled)" in text
    assert "LLM:" not in text  # no llmConfig, no line


@pytest.mark.django_db
def test_page__admin__replace_form_holds_every_field_of_the_policy(team, dana):
    policy = full_policy(team)
    content = client_for(dana).get(page_url(team)).content.decode()
    body = content.split(f'action="{replace_url(team, policy)}"', 1)[1]
    body = body.split("<textarea", 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]
    shown = json.loads(body.replace("&quot;", '"').replace("&#x27;", "'"))
    assert shown == {
        "toolName": "transfer_funds",
        "mode": "deterministic",
        "constraints": LIMIT,
        "sessionConstraints": SESSION,
        "rateLimits": RATE_LIMITS,
        "outputRules": OUTPUT_RULES,
        "llmConfig": None,
    }


@pytest.mark.django_db
def test_tool_policy_replace__bad_session_constraint_and_rate_limit__400_each_beside_the_editor_and_unchanged(
    team, dana
):
    # Given the policy; when an admin submits a negative budget and a rate limit without a window
    policy = full_policy(team)
    bad = {
        "mode": "deterministic",
        "sessionConstraints": {**SESSION, "budget": -5},
        "rateLimits": [{"scope": "session", "maxCalls": 10}],
    }
    response = client_for(dana).post(replace_url(team, policy), {"body": json.dumps(bad)})
    # Then both problems are listed under that policy's textarea at their paths, and nothing changed
    assert response.status_code == 400
    content = response.content.decode()
    form = content.split(f'action="{replace_url(team, policy)}"', 1)[1].split("</form>", 1)[0]
    assert '<span class="where">sessionConstraints.budget</span>' in form
    assert '<span class="where">rateLimits[0].windowSeconds</span>' in form
    assert "-5" in form  # the submitted text stays in the form
    stored = ToolPolicy.objects.get(pk=policy.pk)
    assert (stored.version, stored.session_constraints, stored.rate_limits) == (1, SESSION, RATE_LIMITS)


@pytest.mark.django_db
def test_tool_policy_replace__admin_on_a_review_team_raises_the_budget__saved():
    # Given a team that requires review (no API key may change its policies), and its admin
    team = TeamFactory(require_policy_review=True)
    admin = member_of(team, Membership.Role.ADMIN, username="dana")
    policy = full_policy(team)
    # When the admin raises the budget (a loosening) on the page
    raised = {"mode": "deterministic", "sessionConstraints": {**SESSION, "budget": 500}}
    response = client_for(admin).post(replace_url(team, policy), {"body": json.dumps(raised)})
    # Then it is saved: a person may loosen it
    assert response.status_code == 302
    stored = ToolPolicy.objects.get(pk=policy.pk)
    assert (stored.version, stored.session_constraints["budget"]) == (2, 500)
    assert "Session: budget 500 on amount" in text_of(client_for(admin).get(page_url(team)))
