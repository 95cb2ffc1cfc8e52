"""Once an approval is decided anywhere (browser, API, Slack) or expires, the Slack messages
that still show its Approve / Deny buttons get the outcome instead: ``chat.update`` with the
endpoint's bot token, or, without one, the ``response_url`` of a press on that message while
Slack still takes it (30 minutes).

Driven from the endpoint's dispatch (webhooks/dispatch.py), which reads the team's ordered
events after the endpoint's cursor: every ``approval.resolved`` / ``approval.expired`` passes
there once, whichever events the endpoint subscribes to, so no decision is missed because a
notice was. A Slack call that fails is logged and the message stays as it is; a press on it
later still finds the approval decided and replaces the buttons then.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.utils import timezone

from approvals.models import Approval
from common.events import Event, EventType
from webhooks.models import SlackMessage, WebhookEndpoint
from webhooks.slack.client import SlackApiError, slack_respond, slack_update_message
from webhooks.slack.outcome import approval_outcome_message

logger = logging.getLogger(__name__)

# Slack takes a response_url for 30 minutes (and five uses).
RESPONSE_URL_SECONDS = 30 * 60
_ENDING_EVENTS = frozenset({EventType.APPROVAL_RESOLVED, EventType.APPROVAL_EXPIRED})


def approvals_ended_in(events: Iterable[Event]) -> set[uuid.UUID]:
    """The approvals that ``events`` decide or expire."""
    ended = set()
    for event in events:
        approval_id = event.data.get("approval_id")
        if event.type in _ENDING_EVENTS and isinstance(approval_id, str):
            try:
                ended.add(uuid.UUID(approval_id))
            except ValueError:
                continue
    return ended


def slack_messages_to_retire(*, endpoint: WebhookEndpoint, events: Iterable[Event]) -> list[uuid.UUID]:
    """The approvals among ``events`` that still have a message with buttons on ``endpoint``
    (one indexed query; none when the endpoint is not Slack's or nothing ended)."""
    if endpoint.format != WebhookEndpoint.Format.SLACK:
        return []
    ended = approvals_ended_in(events)
    if not ended:
        return []
    return list(
        SlackMessage.objects.filter(endpoint=endpoint, approval_id__in=ended, retired_at__isnull=True)
        .values_list("approval_id", flat=True)
        .distinct()
    )


def slack_messages_retire(*, approval_id: uuid.UUID) -> int:
    """Replace the buttons of every message still showing them for ``approval_id``, once it is
    no longer pending; returns how many were replaced."""
    approval = Approval.objects.select_related("team").filter(pk=approval_id).first()
    if approval is None or approval.status == Approval.Status.PENDING:
        return 0
    outcome = approval_outcome_message(approval)
    now = timezone.now()
    retired = 0
    messages = SlackMessage.objects.filter(approval_id=approval_id, retired_at__isnull=True).select_related("endpoint")
    for message in messages:
        token = message.endpoint.slack_bot_token
        try:
            if token:
                slack_update_message(bot_token=token, channel=message.channel, ts=message.ts, message=outcome)
            elif message.response_url and now - message.created_at < timedelta(seconds=RESPONSE_URL_SECONDS):
                slack_respond(response_url=message.response_url, message=outcome, replace_original=True)
            else:
                continue  # nothing left to reach it with: a later press replaces it
        except SlackApiError as exc:
            logger.warning("slack.retire_failed approval=%s message=%s/%s: %s", approval_id, message.channel, message.ts, exc)
            continue
        retired += SlackMessage.objects.filter(pk=message.pk, retired_at__isnull=True).update(retired_at=now)
    return retired
