"""The ``pagerduty`` format: an Events API v2 event (POST to /v2/enqueue; 202 is accepted).

Decisions:

- ``trigger`` for deny, require_approval, budget_exceeded, webhook.failed and
  policy.published; ``resolve`` for approval.resolved and approval.expired, with the same
  ``dedup_key`` as the request's trigger, so the alert closes when the approval is decided
  anywhere. A resolve carries only ``routing_key``, ``event_action`` and ``dedup_key``, which
  is all the API reads of one.
- ``dedup_key``: the approval id when there is an approval, else the decision id, else the
  delivery's webhook id. A deny and a budget_exceeded of one decision are one alert. A test
  send always uses its webhook id (and always triggers, at info), so it never merges with or
  resolves a real alert. A key over 255 characters (the API's limit) becomes its SHA-256,
  which is still the same key for the trigger and its resolve; a cut-off key might not be unique.
- ``severity``: critical -> critical, high -> error, medium -> warning, low -> warning,
  info -> info. PagerDuty has four levels to our five; low keeps "something a rule caught"
  apart from info ("nothing wrong": a publish, a test). policy.published is info whatever
  the message says: a publish is news, not an incident.
- ``payload.summary`` at most 1,024 characters (the API's limit); ``source`` is
  ``veto-cloud/<team slug>``, ``component`` the tool, ``group`` the team slug, ``class`` the
  event. The other short fields have no documented limit and are clipped to 255.
  ``custom_details`` are the message's facts (never a call's arguments: the message has
  none), each text clipped to 2,048 so a page stays far below the API's 512 KB.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any

from webhooks.formats.text import clip, units
from webhooks.messages import WebhookMessage

EVENTS_API_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "warning", "info": "info"}
RESOLVING_EVENTS = frozenset({"approval.resolved", "approval.expired"})
INFO_EVENTS = frozenset({"policy.published"})

SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
SHORT_FIELD_MAX = 255
DETAIL_TEXT_MAX = 2048
CLIENT = "Veto Cloud"


def body(message: WebhookMessage, *, routing_key: str, webhook_id: str) -> bytes:
    return json.dumps(
        event(message, routing_key=routing_key, webhook_id=webhook_id), ensure_ascii=False
    ).encode()


def event(message: WebhookMessage, *, routing_key: str, webhook_id: str) -> dict[str, Any]:
    key = dedup_key(message, webhook_id=webhook_id)
    if message.event in RESOLVING_EVENTS and not message.test:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    tool = (message.decision.tool_name if message.decision else "") or (
        message.approval.tool_name if message.approval else ""
    )
    severity = (
        "info" if message.test or message.event in INFO_EVENTS else SEVERITY.get(message.severity, "info")
    )
    summary = message.summary or message.event
    when = message.occurred_at
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    payload: dict[str, Any] = {
        "summary": clip(f"[Test] {summary}" if message.test else summary, SUMMARY_MAX),
        "source": clip(f"veto-cloud/{message.team_slug}", SHORT_FIELD_MAX),
        "severity": severity,
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "group": clip(message.team_slug, SHORT_FIELD_MAX),
        "class": message.event,
        "custom_details": _details(message),
    }
    if tool:
        payload["component"] = clip(tool, SHORT_FIELD_MAX)
    if not payload["group"]:
        del payload["group"]
    built: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": payload,
        "client": CLIENT,
    }
    links = [
        {"href": url, "text": text}
        for name, text in (
            ("approval", "Approval in Veto Cloud"),
            ("decision", "Decision in Veto Cloud"),
            ("policy", "Policy in Veto Cloud"),
        )
        if (url := message.links.get(name))
    ]
    if links:
        built["links"] = links
        built["client_url"] = links[0]["href"]
    return built


def dedup_key(message: WebhookMessage, *, webhook_id: str) -> str:
    if message.test:
        key = webhook_id
    elif message.approval and message.approval.approval_id:
        key = message.approval.approval_id
    elif message.decision and message.decision.decision_id:
        key = message.decision.decision_id
    else:
        key = webhook_id
    if units(key) > DEDUP_KEY_MAX:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _details(message: WebhookMessage) -> dict[str, Any]:
    raw = message.as_json()
    details: dict[str, Any] = {
        "event": message.event,
        "severity": message.severity,
        "team": message.team_slug,
        "team_name": message.team_name,
        "test": message.test,
    }
    for facts in ("decision", "approval", "policy", "webhook"):
        if raw.get(facts):
            details[facts] = {
                name: _short(value) for name, value in raw[facts].items() if value not in ("", None)
            }
    return {name: _short(value) for name, value in details.items()}


def _short(value: Any) -> Any:
    return clip(value, DETAIL_TEXT_MAX) if isinstance(value, str) else value
