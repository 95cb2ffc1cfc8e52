"""The ``slack`` format: a Block Kit message for an incoming webhook or ``chat.postMessage``.

What a reader needs at a glance (what was stopped, by which rule, why, for which team and
agent) and one button to the page where it can be acted on. A pending approval also gets
Approve / Deny buttons (``veto_approve`` / ``veto_deny``, value = the approval id) that the
Slack interactivity endpoint answers; ``outcome_message`` is the same message with those
buttons replaced by who decided and when, for retiring them (``chat.update`` or the
``response_url``; the caller adds ``channel``/``ts`` or ``replace_original``).

Everything a user or an agent wrote goes through ``_mrkdwn`` (``&``, ``<``, ``>`` as
entities, so ``<!channel>`` in a rule's reason pings nobody and ``<http://x|y>`` links
nowhere) and every text is clipped to Block Kit's limits, since Slack refuses the whole
message (``invalid_blocks``) when one field is too long.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from webhooks.formats.text import clip, clip_pieces
from webhooks.messages import WebhookMessage

# Block Kit's limits (api.slack.com/reference/block-kit), in characters.
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
BUTTON_URL_MAX = 3000
ID_MAX = 255  # block_id and action_id
CONTEXT_TEXT_MAX = 2000
BLOCKS_MAX = 50
# Slack truncates a message's text past 40,000 and advises under 4,000: the fallback text
# (notifications, screen readers) is a line, not the message.
FALLBACK_TEXT_MAX = 3000

APPROVE_ACTION = "veto_approve"
DENY_ACTION = "veto_deny"
# The link button: Slack still posts an interaction for it, to be acknowledged and ignored.
OPEN_ACTION = "veto_open"
APPROVAL_BLOCK_PREFIX = "veto_approval:"
OUTCOME_BLOCK_PREFIX = "veto_outcome:"

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_OUTCOME_WORDS = {
    "approved": ":white_check_mark: Approved",
    "denied": ":no_entry: Denied",
    "expired": ":hourglass: Expired",
    "pending": ":hourglass_flowing_sand: Pending",
}


def body(message: WebhookMessage) -> bytes:
    return json.dumps(build_message(message), ensure_ascii=False, separators=(",", ":")).encode()


def build_message(message: WebhookMessage) -> dict[str, Any]:
    """``{"text", "blocks"}``: with Approve / Deny for a pending approval's request."""
    return _message(message, with_buttons=True)


def outcome_message(message: WebhookMessage) -> dict[str, Any]:
    """The message with its buttons retired: where Approve / Deny were, a line saying what
    became of the approval (approved / denied / expired, by whom, when)."""
    return _message(message, with_buttons=False)


def _message(message: WebhookMessage, *, with_buttons: bool) -> dict[str, Any]:
    title = _title(message)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title, HEADER_MAX)}}
    ]
    summary: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _mrkdwn(message.summary or title, SECTION_TEXT_MAX)},
    }
    link, link_text = _link(message)
    if link:
        summary["accessory"] = {
            "type": "button",
            "text": {"type": "plain_text", "text": clip(link_text, BUTTON_TEXT_MAX)},
            "url": link,
            "action_id": OPEN_ACTION,
        }
    blocks.append(summary)
    fields = _fields(message)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    reason = message.decision.reason if message.decision else ""
    if reason:
        label = "*Reason*\n"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": label + _mrkdwn(reason, SECTION_TEXT_MAX - len(label))},
            }
        )
    approval = message.approval
    if approval:
        asks = message.event == "require_approval" and approval.status == "pending"
        if asks and with_buttons:
            blocks.append(_buttons(approval.approval_id))
        else:
            # Decided already (a retry after the decision, an approval.* event) or retired:
            # what became of it, never buttons that would only be refused.
            blocks.append(_outcome(message))
    blocks.append(_footer(message))
    return {
        "text": _mrkdwn(f"{title}: {message.summary}" if message.summary else title, FALLBACK_TEXT_MAX),
        "blocks": blocks[:BLOCKS_MAX],
    }


def _title(message: WebhookMessage) -> str:
    tool = (message.decision.tool_name if message.decision else "") or (
        message.approval.tool_name if message.approval else ""
    )
    approval_status = message.approval.status if message.approval else ""
    titles = {
        "deny": "Denied",
        "require_approval": "Approval needed",
        "budget_exceeded": "Budget exceeded",
        "approval.resolved": {"approved": "Approved", "denied": "Approval denied"}.get(
            approval_status, "Approval resolved"
        ),
        "approval.expired": "Approval expired",
    }
    if message.event in titles:
        title = f"{titles[message.event]}: {tool}" if tool else titles[message.event]
    elif message.event == "policy.published" and message.policy:
        verb = "rolled back to" if message.policy.kind == "rollback" else "published:"
        title = f"Policy {verb} v{message.policy.version}"
    elif message.event == "webhook.failed" and message.webhook:
        title = f"Webhook disabled: {message.webhook.endpoint_name}"
    else:
        title = message.event
    return f"[Test] {title}" if message.test else title


def _link(message: WebhookMessage) -> tuple[str, str]:
    for key, text in (
        ("approval", "Open approval"),
        ("decision", "Open decision"),
        ("policy", "Open policy"),
    ):
        url = message.links.get(key, "")
        # A clipped URL leads nowhere: too long a link gets no button rather than a broken one.
        if url and len(url) <= BUTTON_URL_MAX:
            return url, text
    return "", ""


def _fields(message: WebhookMessage) -> list[dict[str, str]]:
    decision, approval = message.decision, message.approval
    pairs: list[tuple[str, str]] = []
    if decision:
        pairs += [
            ("Tool", decision.tool_name),
            ("Decision", decision.decision.replace("_", " ")),
            ("Rule", decision.rule_name or decision.rule_id),
        ]
    elif approval:
        pairs += [("Tool", approval.tool_name), ("Rule", approval.rule_name)]
    if message.policy:
        pairs += [("Version", str(message.policy.version)), ("Published by", message.policy.published_by)]
    if message.webhook:
        pairs += [("Endpoint", message.webhook.endpoint_name), ("Why", message.webhook.reason)]
    pairs += [("Severity", message.severity), ("Team", message.team_name or message.team_slug)]
    if decision:
        pairs += [
            ("Agent", decision.agent_id),
            ("Model", decision.model),
            ("Environment", decision.environment),
        ]
    if approval:
        pairs += [("Approval", approval.status), ("Decided by", approval.decided_by)]
    fields = []
    for label, value in pairs:
        if value:
            prefix = f"*{label}*\n"
            fields.append({"type": "mrkdwn", "text": prefix + _mrkdwn(value, FIELD_MAX - len(prefix))})
    return fields[:FIELDS_MAX]


def _buttons(approval_id: str) -> dict[str, Any]:
    value = clip(approval_id, BUTTON_VALUE_MAX)
    return {
        "type": "actions",
        "block_id": clip(APPROVAL_BLOCK_PREFIX + approval_id, ID_MAX),
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "action_id": APPROVE_ACTION,
                "value": value,
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "action_id": DENY_ACTION,
                "value": value,
            },
        ],
    }


def _outcome(message: WebhookMessage) -> dict[str, Any]:
    approval = message.approval
    assert approval is not None
    words = _OUTCOME_WORDS.get(approval.status, _mrkdwn(approval.status, 40))
    if approval.decided_by:
        words += " by *" + _mrkdwn(approval.decided_by, 500) + "*"
    when = approval.decided_at or (approval.expires_at if approval.status == "expired" else None)
    if when:
        words += " " + _slack_date(when)
    return {
        "type": "context",
        "block_id": clip(OUTCOME_BLOCK_PREFIX + approval.approval_id, ID_MAX),
        "elements": [{"type": "mrkdwn", "text": clip(words, CONTEXT_TEXT_MAX)}],
    }


def _footer(message: WebhookMessage) -> dict[str, Any]:
    parts = [
        "Veto Cloud",
        _mrkdwn(message.team_name or message.team_slug, 500),
        _slack_date(message.occurred_at),
    ]
    if message.test:
        parts.append("test send")
    return {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": clip(" · ".join(part for part in parts if part), CONTEXT_TEXT_MAX)}
        ],
    }


def _slack_date(when: datetime) -> str:
    """Slack's date token: shown in each reader's own time zone, with a UTC fallback."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} at {{time}}|{when:%Y-%m-%d %H:%M} UTC>"


def _mrkdwn(text: str, limit: int) -> str:
    return clip_pieces((_ESCAPES.get(ch, ch) for ch in text), limit)
