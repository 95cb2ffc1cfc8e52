"""The few calls to Slack's Web API that approvals need, and the reply to a button press.

``SLACK_API_BASE_URL`` (https://slack.com/api) and ``SLACK_RESPONSE_URL_PREFIX``
(https://hooks.slack.com/) are settings, so tests point them at a local stand-in. A
``response_url`` is taken from the (signed) interaction, and is only followed when it starts
with that prefix: the signature proves Slack sent the press, the prefix that we answer Slack.
Every call is bounded (CALL_TIMEOUT_SECONDS) and runs after the interaction was answered, never
inside Slack's 3 seconds.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 5.0


class SlackApiError(Exception):
    """Slack answered ``ok: false`` (its ``error`` code is the message), or not at all."""


def _call(method: str, *, bot_token: str, http_method: str = "POST", **fields: Any) -> dict[str, Any]:
    url = f"{settings.SLACK_API_BASE_URL}/{method}"
    headers = {"Authorization": f"Bearer {bot_token}"}
    try:
        if http_method == "GET":
            response = httpx.get(url, params=fields, headers=headers, timeout=CALL_TIMEOUT_SECONDS)
        else:
            response = httpx.post(url, json=fields, headers=headers, timeout=CALL_TIMEOUT_SECONDS)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SlackApiError(f"{method}: {exc.__class__.__name__}") from exc
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise SlackApiError(f"{method}: {error or f'HTTP {response.status_code}'}")
    return answer


def slack_user_email(*, bot_token: str, user_id: str) -> str:
    """The e-mail of Slack user ``user_id`` (users.info; the app needs ``users:read.email``)."""
    answer = _call("users.info", bot_token=bot_token, http_method="GET", user=user_id)
    email = ((answer.get("user") or {}).get("profile") or {}).get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SlackApiError("users.info: no e-mail for this user (does the app have users:read.email?)")
    return email


def slack_post_message(*, bot_token: str, channel: str, message: dict[str, Any]) -> tuple[str, str]:
    """Post ``message`` (``text`` + ``blocks``) to ``channel``; the (channel id, ts) that name it
    for a later ``chat.update``."""
    answer = _call("chat.postMessage", bot_token=bot_token, channel=channel, **message)
    return str(answer.get("channel") or channel), str(answer.get("ts") or "")


def slack_update_message(*, bot_token: str, channel: str, ts: str, message: dict[str, Any]) -> None:
    _call("chat.update", bot_token=bot_token, channel=channel, ts=ts, **message)


def slack_respond(*, response_url: str, message: dict[str, Any], replace_original: bool) -> None:
    """Answer a button press through its ``response_url``: replace the message (the outcome in
    place of the buttons) or, ``replace_original=False``, tell only the presser (ephemeral)."""
    if not response_url.startswith(settings.SLACK_RESPONSE_URL_PREFIX):
        raise SlackApiError(f"response_url is not under {settings.SLACK_RESPONSE_URL_PREFIX}")
    body = {**message, "replace_original": replace_original}
    if not replace_original:
        body["response_type"] = "ephemeral"
    try:
        response = httpx.post(response_url, json=body, timeout=CALL_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise SlackApiError(f"response_url: {exc.__class__.__name__}") from exc
    if response.status_code // 100 != 2:
        raise SlackApiError(f"response_url: HTTP {response.status_code}")
