"""policies.selectors.decision_explanation: the rule found where the decision says it was, never
trusted to still exist; and what is said when there is no rule to show."""

from __future__ import annotations

import pytest

from audit.models import DecisionRecord
from policies.selectors import approval_explanation, decision_explanation
from tests.factories import ApprovalFactory, TeamFactory, ToolPolicyFactory, publish_rules, record_decision

pytestmark = pytest.mark.django_db

V1 = """\
rules:
  - id: nested
    name: Nested
    action: block
    tools: [ship]
    conditions:
      - {field: arguments.address.country, operator: in, value: [KP]}
"""
V2 = """\
rules:
  - id: other
    name: Other
    action: block
    tools: [ship]
"""


def test_decision_explanation__rule_of_an_older_version__found_in_that_version_not_the_active_one():
    # Given v1 with the rule and v2 (active) without it, and a decision v1 made
    team = TeamFactory()
    publish_rules(team, V1)
    publish_rules(team, V2)
    decision = record_decision(
        team,
        tool_name="ship",
        arguments={"address": {"country": "KP"}},
        decision="deny",
        rule_id="nested",
        rule_name="Nested",
        rule_set_version=1,
    )

    # When explained
    why = decision_explanation(decision=decision)

    # Then the rule is v1's, with its nested path marked
    assert why.found and why.condition_text == 'arguments.address.country in ["KP"]'
    assert why.paths_to_mark("args") == {("address", "country")}


def test_decision_explanation__rule_missing_in_its_version__not_found_in_version_n():
    team = TeamFactory()
    publish_rules(team, V1)
    publish_rules(team, V2)
    decision = record_decision(team, tool_name="ship", decision="deny", rule_id="other", rule_set_version=1)
    why = decision_explanation(decision=decision)
    assert not why.found and why.message == "Rule 'other' not found in version 1."


def test_decision_explanation__client_and_inline_rules__say_why_no_condition_is_shown():
    team = TeamFactory()
    client = record_decision(team, source=DecisionRecord.Source.CLIENT, decision="deny", reason="local")
    inline = record_decision(
        team, source=DecisionRecord.Source.INLINE_RULES, rule_id="r", rules_hash="ab" * 32, decision="deny"
    )
    assert "Decided by the SDK" in decision_explanation(decision=client).message
    assert f"({'ab' * 32})" in decision_explanation(decision=inline).message
    assert not decision_explanation(decision=inline).found


def test_decision_explanation__tool_policy_deleted__says_so():
    team = TeamFactory()
    policy = ToolPolicyFactory(team=team, tool_name="pay")
    decision = record_decision(
        team,
        tool_name="pay",
        arguments={"amount": 5000},
        decision="deny",
        rule_id="policy:pay",
        rule_name="pay policy v1",
    )
    assert decision_explanation(decision=decision).paths_to_mark("args") == {("amount",)}
    policy.delete()
    why = decision_explanation(decision=decision)
    assert not why.found and "the policy for 'pay' was deleted" in why.message


def test_approval_explanation__another_teams_decision_id__not_read():
    # Given an approval (of team A) pointing at team B's decision id
    team, other = TeamFactory(), TeamFactory()
    publish_rules(other, V1)
    theirs = record_decision(other, tool_name="ship", rule_id="nested", rule_set_version=1)
    approval = ApprovalFactory(team=team, decision_id=theirs.id)

    # Then nothing of B's is explained
    why = approval_explanation(
        team_id=approval.team_id, decision_id=approval.decision_id, rule_id=approval.rule_id, rule_name=""
    )
    assert not why.found and "not in the team's records" in why.message
