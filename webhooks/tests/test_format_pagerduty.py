"""The pagerduty format: Events API v2 shapes and limits, written down as the API states
them, and the trigger/resolve pairing of an approval."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings

from webhooks.formats import render
from webhooks.formats.text import units
from webhooks.messages import WebhookMessage
from webhooks.tests.format_messages import EVENTS, approval, decision, message, messages

ROUTING_KEY = "R0123456789abcdef0123456789abcd"
WEBHOOK_ID = "msg_0c1d2e3f405162738495a6b7c8d9e0f1"
TRIGGER_KEYS = {
    "routing_key",
    "event_action",
    "dedup_key",
    "payload",
    "client",
    "client_url",
    "links",
    "images",
}
PAYLOAD_KEYS = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


def _assert_events_api_v2(event: dict[str, Any], raw: bytes) -> None:
    """What the Events API v2 accepts (developer.pagerduty.com, "Send an Alert Event")."""
    assert len(raw) <= 512 * 1024
    assert event["routing_key"] == ROUTING_KEY
    assert isinstance(event["dedup_key"], str) and 1 <= units(event["dedup_key"]) <= 255
    if event["event_action"] == "resolve":
        # A resolve needs only these, and anything else is ignored at best.
        assert set(event) == {"routing_key", "event_action", "dedup_key"}
        return
    assert event["event_action"] == "trigger"
    assert set(event) <= TRIGGER_KEYS
    payload = event["payload"]
    assert set(payload) <= PAYLOAD_KEYS
    assert {"summary", "source", "severity"} <= set(payload)
    assert 1 <= units(payload["summary"]) <= 1024
    assert payload["source"]
    assert payload["severity"] in ("critical", "error", "warning", "info")
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
    assert isinstance(payload["custom_details"], dict)
    for link in event.get("links", []):
        assert set(link) == {"href", "text"} and link["href"].startswith("https://")


def _event(msg: WebhookMessage, webhook_id: str = WEBHOOK_ID) -> dict[str, Any]:
    rendered = render(
        msg,
        format="pagerduty",
        webhook_id=webhook_id,
        secrets=[],
        routing_key=ROUTING_KEY,
        timestamp=datetime.now(UTC),
    )
    assert rendered.headers["Content-Type"] == "application/json"
    event = json.loads(rendered.body)
    _assert_events_api_v2(event, rendered.body)
    return event


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("deny", "trigger"),
        ("require_approval", "trigger"),
        ("budget_exceeded", "trigger"),
        ("approval.resolved", "resolve"),
        ("approval.expired", "resolve"),
        ("policy.published", "trigger"),
        ("webhook.failed", "trigger"),
    ],
)
def test_pagerduty__each_event__trigger_or_resolve(event: str, action: str) -> None:
    assert _event(message(event))["event_action"] == action


def test_pagerduty__approval_decided__resolves_the_alert_its_request_opened() -> None:
    # Given a request for approval, then its resolution and, elsewhere, an expiry
    opened = _event(message("require_approval"))
    resolved = _event(message("approval.resolved"), webhook_id="msg_other")
    expired = _event(message("approval.expired"), webhook_id="msg_third")
    # Then all three carry the approval's id as dedup_key, whatever the delivery
    assert opened["dedup_key"] == resolved["dedup_key"] == expired["dedup_key"] == approval().approval_id


def test_pagerduty__deny__keyed_by_the_decision_with_the_facts() -> None:
    # Given a high-severity deny
    event = _event(message("deny"))
    # Then it is one alert per decision, with tool, team and event in PagerDuty's fields
    assert event["dedup_key"] == decision().decision_id
    payload = event["payload"]
    assert payload["severity"] == "error"
    assert payload["source"] == "veto-cloud/payments"
    assert (payload["component"], payload["group"], payload["class"]) == ("shell.exec", "payments", "deny")
    assert payload["timestamp"] == "2026-12-03T12:00:05.250000Z"
    assert payload["custom_details"]["decision"]["rule_name"] == "Block rm -rf"
    assert payload["custom_details"]["decision"]["reason"] == "Command deletes files recursively"
    assert event["links"] == [
        {"href": message("deny").links["decision"], "text": "Decision in Veto Cloud"},
    ]
    assert event["client"] == "Veto Cloud" and event["client_url"] == message("deny").links["decision"]


def test_pagerduty__no_approval_nor_decision__keyed_by_the_webhook_id() -> None:
    assert _event(message("webhook.failed"))["dedup_key"] == WEBHOOK_ID


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", "critical"),
        ("high", "error"),
        ("medium", "warning"),
        ("low", "warning"),
        ("info", "info"),
    ],
)
def test_pagerduty__severity__mapped_onto_the_four_levels(severity: str, expected: str) -> None:
    assert _event(message("deny", severity=severity))["payload"]["severity"] == expected


def test_pagerduty__policy_published__info_whatever_the_message_says() -> None:
    assert _event(message("policy.published", severity="critical"))["payload"]["severity"] == "info"


@pytest.mark.parametrize("event", EVENTS)
def test_pagerduty__test_send__info_trigger_of_its_own(event: str) -> None:
    # Given a test send of any event, even one that would resolve
    sent = _event(message(event, test=True, severity="critical"))
    # Then it triggers an info alert keyed by its webhook id, marked as a test: it can neither
    # merge with nor close a real alert
    assert sent["event_action"] == "trigger"
    assert sent["dedup_key"] == WEBHOOK_ID
    assert sent["payload"]["severity"] == "info"
    assert sent["payload"]["summary"].startswith("[Test] ")


def test_pagerduty__dedup_key_over_255__hashed_alike_for_trigger_and_resolve() -> None:
    # Given an approval id longer than PagerDuty keeps
    long_id = "a" * 300
    opened = _event(message("require_approval", approval=approval(approval_id=long_id)))
    resolved = _event(message("approval.resolved", approval=approval("approved", approval_id=long_id)))
    # Then both carry the same key, within the limit
    assert opened["dedup_key"] == resolved["dedup_key"]
    assert opened["dedup_key"].startswith("sha256:") and len(opened["dedup_key"]) == 71


def test_pagerduty__long_summary__clipped_to_1024() -> None:
    summary = _event(message("deny", summary="x" * 5000))["payload"]["summary"]
    assert units(summary) == 1024 and summary.endswith("…")


def test_pagerduty__no_links__no_client_url() -> None:
    event = _event(message("deny", links={}))
    assert "links" not in event and "client_url" not in event


@settings(max_examples=300, deadline=None)
@given(msg=messages())
def test_pagerduty__any_message__events_api_v2(msg: WebhookMessage) -> None:
    # Given any message, long and odd text in every field
    event = _event(msg)
    # Then it is an event the API accepts; a trigger carries the message's summary (or its start)
    if event["event_action"] == "trigger":
        summary = event["payload"]["summary"].removeprefix("[Test] ").removesuffix("…")
        assert (msg.summary or msg.event).startswith(summary)


def test_pagerduty__resolve_with_odd_facts__still_only_the_key() -> None:
    # Given an expiry message whose facts are long and odd
    msg = replace(message("approval.expired"), summary="<x>" * 1000, team_slug="")
    # Then the resolve still carries only routing_key, event_action and dedup_key
    assert set(_event(msg)) == {"routing_key", "event_action", "dedup_key"}


def test_pagerduty__policy_published__links_the_version() -> None:
    msg = message("policy.published")
    assert _event(msg)["links"] == [{"href": msg.links["policy"], "text": "Policy in Veto Cloud"}]
