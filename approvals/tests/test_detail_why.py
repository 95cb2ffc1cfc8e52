"""The approval page's "why it needs approval": the rule with its condition and the arguments that
made it fire, from the same code as the decision page (templates/policies/_rule_why.html)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from tenancy.models import Membership
from tests.factories import ApprovalFactory, TeamFactory, UserFactory, publish_rules, record_decision

pytestmark = pytest.mark.django_db

RULES = """\
rules:
  - name: big_refunds
    tool: refund
    when: args.amount > 100 || args.customer.vip == true
    action: require_approval
    approvers: [compliance]
"""


def member_client(team) -> Client:
    user = UserFactory()
    Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def raised(team, arguments):
    """An approval raised by a recorded decision of the published rule, as validate raises one."""
    decision = record_decision(
        team,
        tool_name="refund",
        arguments=arguments,
        decision="require_approval",
        rule_id="big_refunds",
        rule_name="big_refunds",
        rule_set_version=1,
    )
    return ApprovalFactory(
        team=team,
        tool_name="refund",
        arguments=arguments,
        rule_id="big_refunds",
        rule_name="big_refunds",
        decision_id=decision.id,
        approver_groups=["compliance"],
    )


def why_section(html: str) -> str:
    match = re.search(r'<section class="card" id="rule">(.*?)</section>', html, re.S)
    assert match is not None
    return match.group(1)


def test_approval_detail__raised_by_a_rule__shows_condition_and_marks_the_argument_that_fired():
    # Given an approval raised because the amount (not the customer's vip flag) was over 100
    team = TeamFactory()
    publish_rules(team, RULES)
    approval = raised(team, {"amount": 250, "customer": {"vip": False, "name": "<b>Eve</b>"}})

    # When the approval page is opened
    html = member_client(team).get(reverse("approvals:detail", args=[approval.id])).content.decode()

    # Then "why" shows the rule, its condition as written and each part, the amount marked
    why = why_section(html)
    assert "<code data-rule-id>big_refunds</code>" in why
    assert (
        '<pre class="condition" data-condition>args.amount &gt; 100 || args.customer.vip == true</pre>' in why
    )
    assert re.search(r'<tr class="fired" data-path="args.amount">.*?<mark>250</mark>.*?yes', why, re.S)
    assert re.search(r'<tr data-path="args.customer.vip">.*?<code>false</code>.*?no', why, re.S)
    assert "<b>Eve</b>" not in html


def test_approval_detail__decision_not_recorded__says_so_and_names_the_rule():
    # Given an approval without the decision that raised it
    team = TeamFactory()
    approval = ApprovalFactory(team=team, rule_id="block_pii_exports", rule_name="Exports with PII")

    # When opened
    why = why_section(
        member_client(team).get(reverse("approvals:detail", args=[approval.id])).content.decode()
    )

    # Then the rule is named and the page says why there is no condition to show
    assert "Exports with PII <code data-rule-id>block_pii_exports</code>" in why
    assert "The decision that raised this approval is not in the team&#x27;s records." in why
