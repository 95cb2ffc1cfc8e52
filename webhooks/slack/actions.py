"""A Slack button press (a ``block_actions`` interaction) read into what Veto acts on. Pure:
the body has already passed the signature check (webhooks/slack/signature.py).

Slack posts ``application/x-www-form-urlencoded`` with one field, ``payload``, holding JSON.
Only our two buttons are accepted (action ids ``veto_approve`` / ``veto_deny``, the value an
approval id); anything else is refused with a reason rather than guessed at.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

ACTION_IDS: dict[str, Literal["approve", "deny"]] = {"veto_approve": "approve", "veto_deny": "deny"}
# Slack's payloads are a few KB; anything near this is not one.
PAYLOAD_MAX_BYTES = 64 * 1024


class SlackPayloadError(Exception):
    """Why the interaction cannot be acted on (said in the 400 body)."""


@dataclass(frozen=True, slots=True)
class SlackAction:
    action: Literal["approve", "deny"]
    approval_id: uuid.UUID
    slack_user_id: str
    slack_team_id: str
    response_url: str
    channel_id: str
    message_ts: str


def slack_action_parse(body: bytes) -> SlackAction:
    if len(body) > PAYLOAD_MAX_BYTES:
        raise SlackPayloadError(f"the body is over {PAYLOAD_MAX_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SlackPayloadError("the body is not a form with a payload field") from exc
    raw = fields.get("payload")
    if not raw or len(raw) != 1:
        raise SlackPayloadError("the form has no single payload field")
    try:
        payload = json.loads(raw[0])
    except ValueError as exc:
        raise SlackPayloadError("payload is not JSON") from exc
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise SlackPayloadError("only block_actions interactions are handled")
    actions = payload.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise SlackPayloadError("payload.actions must hold one action")
    pressed = actions[0]
    action = ACTION_IDS.get(_text(pressed, "action_id"))
    if action is None:
        raise SlackPayloadError(f"payload.actions[0].action_id must be one of {', '.join(ACTION_IDS)}")
    try:
        approval_id = uuid.UUID(_text(pressed, "value"))
    except ValueError as exc:
        raise SlackPayloadError("payload.actions[0].value is not an approval id") from exc
    user = _object(payload, "user")
    slack_user_id = _text(user, "id")
    if not slack_user_id:
        raise SlackPayloadError("payload.user.id is missing")
    container = _object(payload, "container")
    return SlackAction(
        action=action,
        approval_id=approval_id,
        slack_user_id=slack_user_id,
        slack_team_id=_text(_object(payload, "team"), "id") or _text(user, "team_id"),
        response_url=_text(payload, "response_url"),
        channel_id=_text(container, "channel_id") or _text(_object(payload, "channel"), "id"),
        message_ts=_text(container, "message_ts"),
    )


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _text(parent: dict[str, Any], key: str) -> str:
    value = parent.get(key)
    return value if isinstance(value, str) else ""
