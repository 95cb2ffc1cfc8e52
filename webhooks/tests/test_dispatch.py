"""Dispatch: a team's committed events after each endpoint's cursors become deliveries once,
mapped to webhook events, filtered by the endpoint's events and min_severity, with messages
built from the committed rows (never a call's arguments or context)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from approvals.services import approvals_expire_due
from audit.trail import audit_event_append
from tests.factories import ApprovalFactory, TeamFactory, publish_rules, record_decision
from webhooks import dispatch
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tests.helpers import endpoint_for, sink_paused

pytestmark = pytest.mark.django_db

URL = "https://93.184.215.14/hook"
ALL = ("deny", "require_approval", "budget_exceeded", "approval.resolved", "approval.expired", "policy.published", "webhook.failed")


@pytest.fixture(autouse=True)
def _paused():
    with sink_paused():
        yield


@pytest.fixture
def team():
    return TeamFactory(slug="payments", name="Payments")


def deliveries(endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("source_key"))


def test_dispatch_team__deny_and_allow__one_deny_delivery_without_arguments_and_cursor_advanced(team):
    # Given an endpoint for denials, then an allow and a deny carrying secret arguments
    endpoint = endpoint_for(team, url=URL, events=("deny",))
    record_decision(team, decision="allow", tool_name="read")
    deny = record_decision(
        team,
        decision="deny",
        tool_name="transfer",
        rule_id="no_big",
        rule_name="No big transfers",
        reason="amount over limit",
        severity="high",
        arguments={"card": "4111-SECRET"},
        context={"token": "CTX-SECRET"},
    )
    # When the team is dispatched
    made = dispatch.dispatch_team(team.id)
    # Then one deny delivery carries the decision's facts and a link, and no argument or context
    assert made == 1
    (delivery,) = deliveries(endpoint)
    assert delivery.event == "deny" and delivery.severity == "high"
    assert delivery.source_key == f"decisions:{deny.sequence}:deny"
    assert delivery.message["decision"]["tool_name"] == "transfer"
    assert delivery.message["decision"]["rule_name"] == "No big transfers"
    assert delivery.message["links"]["decision"].endswith(f"/dashboard/teams/payments/decisions/{deny.id}/")
    assert "SECRET" not in json.dumps(delivery.message)
    endpoint.refresh_from_db()
    assert endpoint.decisions_cursor == deny.sequence


def test_dispatch_team__run_twice__makes_each_delivery_once(team):
    # Given an endpoint and a deny already dispatched
    endpoint = endpoint_for(team, url=URL, events=("deny",))
    record_decision(team, decision="deny", severity="high")
    dispatch.dispatch_team(team.id)
    # When the team is dispatched again, and again with the cursor moved back (a lost update)
    second = dispatch.dispatch_team(team.id)
    WebhookEndpoint.objects.filter(id=endpoint.id).update(decisions_cursor=0)
    dispatch.dispatch_team(team.id)
    # Then there is still exactly one delivery
    assert second == 0
    assert len(deliveries(endpoint)) == 1


def test_dispatch_team__require_approval__sent_once_with_the_pending_approval_and_its_link(team):
    # Given an endpoint for approvals and a decision that raised one (decision.created and
    # approval.created at one sequence)
    endpoint = endpoint_for(team, url=URL, events=ALL)
    approval = ApprovalFactory(team=team, tool_name="wire", rule_name="Wires need a human", severity="critical")
    record_decision(team, decision="require_approval", tool_name="wire", approval_id=approval.id, severity="critical")
    # When dispatched
    dispatch.dispatch_team(team.id)
    # Then one require_approval delivery, with the approval as pending and the approval page
    (delivery,) = deliveries(endpoint)
    assert delivery.event == "require_approval"
    assert delivery.message["approval"]["approval_id"] == str(approval.id)
    assert delivery.message["approval"]["status"] == "pending"
    assert delivery.message["links"]["approval"].endswith(f"/dashboard/approvals/{approval.id}/")


def test_dispatch_team__deny_by_a_rate_limited_rule__is_budget_exceeded_not_deny(team):
    # Given a published rule set whose rule blocks over a rate limit, and an endpoint for both events
    version = publish_rules(
        team,
        "rules:\n"
        "  - id: too_many\n"
        "    name: Too many exports\n"
        "    action: block\n"
        "    tools: [export]\n"
        "    rate_limits: [{scope: agent, window_seconds: 60, max_calls: 3}]\n"
        "  - id: no_delete\n"
        "    name: No deletes\n"
        "    action: block\n"
        "    tools: [delete]\n",
    )
    endpoint = endpoint_for(team, url=URL, events=("deny", "budget_exceeded"))
    limited = record_decision(team, decision="deny", tool_name="export", rule_id="too_many", rule_set_version=version.number)
    plain = record_decision(team, decision="deny", tool_name="delete", rule_id="no_delete", rule_set_version=version.number)
    # When dispatched
    dispatch.dispatch_team(team.id)
    # Then the rate-limited denial is budget_exceeded and the other a deny, one delivery each
    events = {d.source_key: d.event for d in deliveries(endpoint)}
    assert events == {
        f"decisions:{limited.sequence}:budget_exceeded": "budget_exceeded",
        f"decisions:{plain.sequence}:deny": "deny",
    }


def test_dispatch_team__min_severity_high__lower_denials_filtered_governance_events_not(team):
    # Given an endpoint from high, for denials and publishes
    endpoint = endpoint_for(team, url=URL, events=("deny", "policy.published"), min_severity="high")
    record_decision(team, decision="deny", severity="medium")
    record_decision(team, decision="deny", severity="")  # no rule's severity: the default, medium
    critical = record_decision(team, decision="deny", severity="critical")
    publish_rules(team, "rules:\n  - id: r\n    action: block\n    tools: [x]\n")
    # When dispatched
    dispatch.dispatch_team(team.id)
    # Then the critical denial and the publish (which min_severity does not filter) are sent
    got = [(d.event, d.severity) for d in deliveries(endpoint)]
    assert sorted(got) == [("deny", "critical"), ("policy.published", "info")]
    assert any(d.source_key == f"decisions:{critical.sequence}:deny" for d in deliveries(endpoint))


def test_dispatch_team__endpoint_events__only_subscribed_ones(team):
    # Given one endpoint for publishes only and one for denials only
    publishes = endpoint_for(team, url=URL, events=("policy.published",))
    denials = endpoint_for(team, url=URL, events=("deny",))
    record_decision(team, decision="deny", severity="low")
    version = publish_rules(team, "rules:\n  - id: r\n    action: block\n    tools: [x]\n")
    # When dispatched
    dispatch.dispatch_team(team.id)
    # Then each got only its own, the publish naming its version and who published it
    assert [d.event for d in deliveries(denials)] == ["deny"]
    (publish,) = deliveries(publishes)
    assert publish.event == "policy.published"
    assert publish.message["policy"] == {"version": version.number, "published_by": "tests", "kind": "publish"}


def test_dispatch_team__approval_expired__sent_with_the_approvals_severity(team):
    # Given an endpoint from high for expiries, and a critical approval past its deadline
    endpoint = endpoint_for(team, url=URL, events=("approval.expired",), min_severity="high")
    approval = ApprovalFactory(team=team, severity="critical", expires_at=timezone.now() - timedelta(seconds=1))
    approvals_expire_due(team_ids=[team.id])
    # When dispatched
    dispatch.dispatch_team(team.id)
    # Then its expiry is sent, at the approval's severity
    (delivery,) = deliveries(endpoint)
    assert (delivery.event, delivery.severity) == ("approval.expired", "critical")
    assert delivery.message["approval"]["approval_id"] == str(approval.id)
    assert delivery.message["approval"]["status"] == "expired"


def test_dispatch_team__webhook_failed_entry__sent_to_the_teams_other_endpoint(team):
    # Given an endpoint for webhook.failed, and another endpoint's failure on the trail
    endpoint = endpoint_for(team, url=URL, events=("webhook.failed",), min_severity="critical")
    audit_event_append(
        team_id=team.id,
        kind="webhook.failed",
        actor_name="veto (webhooks)",
        details={"endpoint_id": "e1", "endpoint_name": "SIEM", "reason": "gone", "url_host": "siem"},
    )
    # When dispatched
    dispatch.dispatch_team(team.id)
    # Then it is sent (min_severity does not filter it), naming the disabled endpoint
    (delivery,) = deliveries(endpoint)
    assert delivery.event == "webhook.failed"
    assert delivery.message["webhook"] == {"endpoint_id": "e1", "endpoint_name": "SIEM", "reason": "gone"}


def test_dispatch_team__backlog_over_several_pages_and_transactions__all_in_order(team, monkeypatch):
    # Given small pages and transactions, and seven denials behind the cursor
    monkeypatch.setattr(dispatch, "PAGE_SIZE", 2)
    monkeypatch.setattr(dispatch, "ENTRIES_PER_TRANSACTION", 3)
    endpoint = endpoint_for(team, url=URL, events=("deny",))
    rows = [record_decision(team, decision="deny", severity="high") for _ in range(7)]
    # When dispatched once
    made = dispatch.dispatch_team(team.id)
    # Then every denial has its delivery and the cursor is at the last
    assert made == 7
    assert {d.source_key for d in deliveries(endpoint)} == {f"decisions:{r.sequence}:deny" for r in rows}
    endpoint.refresh_from_db()
    assert endpoint.decisions_cursor == rows[-1].sequence


def test_dispatch_team__disabled_endpoint__nothing_and_cursor_kept(team):
    # Given a disabled endpoint and a deny
    endpoint = endpoint_for(team, url=URL, events=("deny",), enabled=False)
    record_decision(team, decision="deny")
    # When dispatched
    dispatch.dispatch_team(team.id)
    # Then nothing is made for it
    assert deliveries(endpoint) == []
    endpoint.refresh_from_db()
    assert endpoint.decisions_cursor == 0


def test_sweep__team_not_dispatched_and_deliveries_no_task_took__caught_up_once(team, monkeypatch):
    # Given a denial nobody dispatched (its notice was lost); a delivery never attempted, made two
    # minutes ago; a retry due a minute ago; and deliveries that probably have a task on the way
    sent: list[list[str]] = []
    monkeypatch.setattr(dispatch, "enqueue", lambda ids: sent.append([str(i) for i in ids]))
    cache.clear()
    endpoint = endpoint_for(team, url=URL, events=("deny",))
    record_decision(team, decision="deny", severity="high")
    now = timezone.now()

    def row(key: str, due: timedelta, attempts: int = 0) -> WebhookDelivery:
        return WebhookDelivery.objects.create(
            endpoint=endpoint, team=team, event="deny", source_key=key, next_attempt_at=now - due, attempt_count=attempts
        )

    lost = row("test:lost", timedelta(minutes=2))
    retry = row("test:retry", timedelta(minutes=1), attempts=2)
    row("test:fresh", timedelta(seconds=10))  # made 10 s ago: its task is probably in the queue
    row("test:later", -timedelta(hours=1), attempts=1)  # a retry not due yet
    # When the beat sweep runs, twice
    made, due = dispatch.sweep()
    _, due_again = dispatch.sweep()
    # Then the denial has its delivery, and the lost one and the retry (only) went to tasks, once
    assert made == 1
    assert WebhookDelivery.objects.filter(endpoint=endpoint, source_key__startswith="decisions:").count() == 1
    assert due == 2 and sorted(sent[-1]) == sorted([str(lost.id), str(retry.id)])
    assert due_again == 0


def test_teams_behind__only_teams_whose_endpoint_cursor_is_behind_a_head(team):
    # Given a team whose endpoint has read everything, and one with a denial after its cursor
    idle = TeamFactory(slug="idle")
    record_decision(idle, decision="deny")
    endpoint_for(idle, url=URL, events=("deny",))  # cursors at the heads
    endpoint_for(team, url=URL, events=("deny",))
    record_decision(team, decision="deny")
    # Then only the second is behind; once dispatched, neither
    assert dispatch.teams_behind() == [team.id]
    dispatch.dispatch_team(team.id)
    assert dispatch.teams_behind() == []
