"""The demo shows a quorum working: seed_demo's large-export rule needs two approvals, and its
compliance group has two people (alice and bob), so such an approval can pass."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from approvals.models import Approval
from approvals.services import approval_resolve
from policies.engine import ToolCall, compile_rule_set
from policies.models import RuleSetVersion
from tenancy.actor import Actor
from tenancy.models import Team
from tests.factories import ApprovalFactory

pytestmark = pytest.mark.django_db


def test_seed_demo__large_export__needs_alice_and_bob_and_passes_with_both(monkeypatch):
    # Given the seeded demo and a large internal export, as its active rules decide it
    monkeypatch.setenv("VETO_DEMO_PASSWORD", "demo-password-1")
    call_command("seed_demo", verbosity=0, stdout=io.StringIO())
    team = Team.objects.get(slug="demo")
    rules = compile_rule_set(RuleSetVersion.objects.get(team=team, is_active=True).document)
    decision = rules.evaluate(
        ToolCall("run_data_export", {"bucket": "internal-reports", "row_count": 250000}, {})
    )
    assert (decision.decision, decision.rule_id, decision.min_approvals) == (
        "require_approval",
        "large_export_two_approvals",
        2,
    )
    approval = ApprovalFactory(
        team=team,
        arguments={"bucket": "internal-reports", "row_count": 250000},
        rule_id=decision.rule_id,
        approver_groups=list(decision.approvers),
        min_approvals=decision.min_approvals,
    )
    alice, bob = (get_user_model().objects.get(username=name) for name in ("alice", "bob"))
    # When alice approves, then bob
    first = approval_resolve(approval=approval, actor=Actor.person(alice), action="approve")
    second = approval_resolve(
        approval=Approval.objects.get(pk=approval.pk), actor=Actor.person(bob), action="approve"
    )
    # Then the first is one vote of two, and the second approves it
    assert (first.resolved, first.approval.status) == (False, Approval.Status.PENDING)
    assert (second.resolved, second.approval.status) == (True, Approval.Status.APPROVED)


def test_seed_demo__small_export_and_pii_export__decided_as_before(monkeypatch):
    monkeypatch.setenv("VETO_DEMO_PASSWORD", "demo-password-1")
    call_command("seed_demo", verbosity=0, stdout=io.StringIO())
    rules = compile_rule_set(RuleSetVersion.objects.get(team__slug="demo", is_active=True).document)
    small = rules.evaluate(ToolCall("run_data_export", {"bucket": "internal-x", "row_count": 10}, {}))
    pii = rules.evaluate(
        ToolCall("run_data_export", {"bucket": "internal-x", "include_pii": True, "row_count": 10**6}, {})
    )
    unsized = rules.evaluate(ToolCall("run_data_export", {"bucket": "internal-x"}, {}))
    assert (small.decision, pii.rule_id, pii.min_approvals, unsized.decision) == (
        "allow",
        "block_pii_exports",
        1,
        "allow",
    )
