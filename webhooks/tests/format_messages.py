"""Messages for the format tests: one realistic message per event, and hypothesis strategies
that fill every text field with long and odd strings (markup, escapes, newlines, astral
characters), since whatever a policy author or an agent wrote reaches these fields."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from webhooks.messages import ApprovalFacts, DecisionFacts, PolicyFacts, WebhookFailureFacts, WebhookMessage

EVENTS = (
    "deny",
    "require_approval",
    "budget_exceeded",
    "approval.resolved",
    "approval.expired",
    "policy.published",
    "webhook.failed",
)
SEVERITIES = ("info", "low", "medium", "high", "critical")
AT = datetime(2026, 12, 3, 12, 0, 5, 250000, tzinfo=UTC)


def new_secret(size: int = 32) -> str:
    return "whsec_" + base64.b64encode(os.urandom(size)).decode()


def decision(**changes: str) -> DecisionFacts:
    facts = DecisionFacts(
        decision_id="4f6c1a2e-0d51-4c84-9d0e-5b3f2a1c9e77",
        tool_name="shell.exec",
        decision="deny",
        rule_id="no-rm-rf",
        rule_name="Block rm -rf",
        reason="Command deletes files recursively",
        agent_id="deploy-bot",
        session_id="s-81",
        model="gpt-5",
        environment="production",
        source="server",
        api_key_name="ci key",
    )
    return replace(facts, **changes)


def approval(status: str = "pending", **changes: object) -> ApprovalFacts:
    decided = status in ("approved", "denied")
    facts = ApprovalFacts(
        approval_id="a7d2c3b4-1e2f-4a5b-8c9d-0e1f2a3b4c5d",
        status=status,
        tool_name="payments.refund",
        rule_name="Refunds over 500 need a human",
        decided_by="alice" if decided else "",
        decided_at=AT + timedelta(minutes=3) if decided else None,
        expires_at=AT + timedelta(hours=1),
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def message(event: str, **changes: object) -> WebhookMessage:
    """A realistic message of ``event``, with the facts that event carries."""
    links = {"decision": "https://veto.example.com/dashboard/teams/payments/decisions/4f6c1a2e/"}
    kwargs: dict[str, object] = {}
    if event in ("deny", "budget_exceeded"):
        kwargs["decision"] = decision(decision="deny")
    if event == "require_approval":
        kwargs["decision"] = decision(decision="require_approval", tool_name="payments.refund")
        kwargs["approval"] = approval("pending")
    if event in ("approval.resolved", "approval.expired"):
        kwargs["decision"] = decision(decision="require_approval", tool_name="payments.refund")
        kwargs["approval"] = approval("expired" if event == "approval.expired" else "approved")
    if "approval" in kwargs:
        links["approval"] = "https://veto.example.com/dashboard/teams/payments/approvals/a7d2c3b4/"
    if event == "policy.published":
        kwargs["policy"] = PolicyFacts(version=7, published_by="bob")
        links = {"policy": "https://veto.example.com/dashboard/teams/payments/policies/7/"}
    if event == "webhook.failed":
        kwargs["webhook"] = WebhookFailureFacts(endpoint_id="e-1", endpoint_name="SIEM", reason="failing")
        links = {}
    built = WebhookMessage(
        event=event,
        severity="high",
        occurred_at=AT,
        team_slug="payments",
        team_name="Payments",
        summary=f"{event} on the payments team",
        links=links,
        **kwargs,  # type: ignore[arg-type]
    )
    return replace(built, **changes)  # type: ignore[arg-type]


# Text that has broken formats before: markup of each format, escapes, newlines, astral
# characters, and long runs past every limit.
odd_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.sampled_from("&<>|\\=\n\r\t *_~`\"'{}[]:😀é"), max_size=200),
    st.text(min_size=1, max_size=12).map(lambda chunk: chunk * 700),
)
short_text = st.text(min_size=1, max_size=40)


@st.composite
def messages(draw: st.DrawFn, events: tuple[str, ...] = EVENTS) -> WebhookMessage:
    """Any message: a realistic one of any event with every text field redrawn."""
    event = draw(st.sampled_from(events))
    base = message(event)
    decision_facts = base.decision and replace(
        base.decision,
        decision_id=draw(short_text),
        tool_name=draw(odd_text),
        rule_id=draw(odd_text),
        rule_name=draw(odd_text),
        reason=draw(odd_text),
        agent_id=draw(odd_text),
        model=draw(odd_text),
        environment=draw(odd_text),
    )
    approval_facts = base.approval and replace(
        base.approval,
        approval_id=draw(short_text),
        tool_name=draw(odd_text),
        rule_name=draw(odd_text),
        decided_by=draw(odd_text) if base.approval.decided_by else "",
    )
    policy_facts = base.policy and replace(base.policy, published_by=draw(odd_text))
    webhook_facts = base.webhook and replace(base.webhook, endpoint_name=draw(odd_text))
    links = {key: url + draw(st.text(alphabet="abc&<>|=", max_size=3000)) for key, url in base.links.items()}
    return replace(
        base,
        severity=draw(st.sampled_from(SEVERITIES)),
        team_slug=draw(odd_text),
        team_name=draw(odd_text),
        summary=draw(odd_text),
        links=links,
        decision=decision_facts,
        approval=approval_facts,
        policy=policy_facts,
        webhook=webhook_facts,
        test=draw(st.booleans()),
    )
