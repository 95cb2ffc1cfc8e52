"""Approve / Deny pressed on a Slack message: who pressed, whether they may, and the answer.

Two steps, because Slack wants its answer within 3 seconds and looking the presser up is a
call to Slack:

1. ``slack_interaction_receive`` (the view, at once): the endpoint, the signature over the
   raw body (before anything is parsed), the press read. A forged, stale or foreign request
   stops here with why.
2. ``slack_interaction_apply`` (a task, after the answer): the presser's e-mail from Slack
   (users.info), the one active member of the endpoint's team with that e-mail, then
   ``approvals.services.approval_resolve`` as that person, channel ``slack``: the same
   eligibility as the browser (approver groups, no approving one's own request, quorum), never
   a key. The presser hears the outcome: the message's buttons replaced by it, or, when they may
   not decide, a message only they see. A second press (a double click, another approver a
   moment later) finds it decided and resolves nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from approvals.models import Approval, ApprovalEvent
from approvals.services import (
    AlreadyResolved,
    NotAnApprover,
    approval_refusal_record,
    approval_resolve,
)
from common.errors import NotFound
from tenancy.actor import Actor
from webhooks.models import SlackMessage, WebhookEndpoint
from webhooks.slack.actions import SlackAction, slack_action_parse
from webhooks.slack.client import SlackApiError, slack_respond, slack_user_email
from webhooks.slack.outcome import approval_outcome_message, ephemeral_message
from webhooks.slack.signature import slack_request_verify

logger = logging.getLogger(__name__)


class SlackEndpointNotFound(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class Received:
    endpoint_id: uuid.UUID
    action: SlackAction


def slack_interaction_receive(
    *, endpoint_id: uuid.UUID, body: bytes, timestamp: str | None, signature: str | None, now: float
) -> Received:
    """Raise SlackEndpointNotFound, SlackSignatureError or SlackPayloadError, or return the
    press to apply. Reads one row; nothing is written, so a forged request leaves no trace but
    the log line."""
    endpoint = (
        WebhookEndpoint.objects.filter(pk=endpoint_id, format=WebhookEndpoint.Format.SLACK)
        .only("id", "slack_signing_secret")
        .first()
    )
    if endpoint is None:
        raise SlackEndpointNotFound("No Slack webhook endpoint has this id.")
    slack_request_verify(
        signing_secret=endpoint.slack_signing_secret,
        timestamp=timestamp,
        signature=signature,
        body=body,
        now=now,
    )
    return Received(endpoint_id=endpoint.pk, action=slack_action_parse(body))


def slack_interaction_apply(*, endpoint_id: uuid.UUID, action: SlackAction) -> str:
    """Apply a verified press; returns what happened (for the log and tests): ``resolved``,
    ``voted``, ``already_decided``, ``refused`` or ``unknown_approval``."""
    endpoint = WebhookEndpoint.objects.select_related("team").filter(pk=endpoint_id).first()
    if endpoint is None:  # deleted between the press and now
        return "unknown_approval"
    approval = Approval.objects.filter(pk=action.approval_id, team_id=endpoint.team_id).first()
    if approval is None:
        _tell(action, f"Veto knows no approval {action.approval_id} in {endpoint.team.name}.")
        return "unknown_approval"
    _remember_message(endpoint, action)

    person, why = _presser(endpoint, action)
    if person is None:
        approval_refusal_record(
            approval=approval,
            who=f"slack:{action.slack_user_id}",
            why=why,
            channel=ApprovalEvent.Channel.SLACK,
        )
        _tell(action, f"Veto cannot let you decide this: {why}.")
        return "refused"
    try:
        outcome = approval_resolve(
            approval=approval, actor=Actor.person(person), action=action.action, via_slack=True
        )
    except NotAnApprover as exc:  # the refusal is in the trail already
        _tell(action, f"Veto cannot let you decide this: {exc.message}.")
        return "refused"
    except AlreadyResolved as exc:
        approval.refresh_from_db()
        if approval.status != Approval.Status.PENDING:
            _replace(action, approval)
        _tell(action, f"Nothing changed: {exc.message}.")
        return "already_decided"
    if not outcome.resolved:
        votes = outcome.approval.votes.count()
        _tell(action, f"Your approval is counted: {votes} of {outcome.approval.min_approvals} needed.")
        return "voted"
    _replace(action, outcome.approval)
    return "resolved"


def _presser(endpoint: WebhookEndpoint, action: SlackAction) -> tuple[User | None, str]:
    """The member who pressed, by the e-mail Slack has for them, or None and why not."""
    if not endpoint.slack_bot_token:
        return None, "this Slack endpoint has no bot token, so Veto cannot read who pressed"
    try:
        email = slack_user_email(bot_token=endpoint.slack_bot_token, user_id=action.slack_user_id)
    except SlackApiError as exc:
        logger.warning(
            "slack.user_lookup_failed endpoint=%s user=%s: %s", endpoint.pk, action.slack_user_id, exc
        )
        return None, "Veto could not read your e-mail from Slack"
    people = list(
        get_user_model()
        .objects.filter(email__iexact=email.strip(), is_active=True, memberships__team_id=endpoint.team_id)
        .distinct()[:2]
    )
    if len(people) != 1:
        # Two members sharing an e-mail cannot be told apart: neither decides from Slack.
        return None, f"no single member of {endpoint.team.name} has the e-mail {email}"
    return people[0], ""


def _remember_message(endpoint: WebhookEndpoint, action: SlackAction) -> None:
    """The pressed message carries the approval's buttons: keep where it is (and the press's
    response_url), so it is retired with the others when the approval is decided."""
    if not action.channel_id or not action.message_ts:
        return
    message, created = SlackMessage.objects.get_or_create(
        endpoint=endpoint,
        channel=action.channel_id,
        ts=action.message_ts,
        defaults={"approval_id": action.approval_id, "response_url": action.response_url},
    )
    if not created and action.response_url and message.response_url != action.response_url:
        SlackMessage.objects.filter(pk=message.pk).update(response_url=action.response_url)


def _replace(action: SlackAction, approval: Approval) -> None:
    try:
        slack_respond(
            response_url=action.response_url,
            message=approval_outcome_message(approval),
            replace_original=True,
        )
    except SlackApiError as exc:
        logger.warning("slack.respond_failed approval=%s: %s", approval.pk, exc)
        return
    SlackMessage.objects.filter(channel=action.channel_id, ts=action.message_ts).update(
        retired_at=approval.resolved_at
    )


def _tell(action: SlackAction, text: str) -> None:
    try:
        slack_respond(
            response_url=action.response_url, message=ephemeral_message(text), replace_original=False
        )
    except SlackApiError as exc:
        logger.warning("slack.respond_failed user=%s: %s", action.slack_user_id, exc)


def received_as_task_arguments(received: Received) -> dict[str, Any]:
    """JSON-ready arguments of the apply task (webhooks.slack.tasks)."""
    action = received.action
    return {
        "endpoint_id": str(received.endpoint_id),
        "action": action.action,
        "approval_id": str(action.approval_id),
        "slack_user_id": action.slack_user_id,
        "slack_team_id": action.slack_team_id,
        "response_url": action.response_url,
        "channel_id": action.channel_id,
        "message_ts": action.message_ts,
    }
