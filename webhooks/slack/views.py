"""POST /v1/slack/interactivity/<endpoint id>: the Request URL of the team's Slack app.

Answers Slack at once (it gives up after 3 seconds): the signature is checked over the raw
body, the press read, and the work (asking Slack who pressed, resolving) handed to a task.
Refusals are JSON like the rest of the API: 401 for a forged or stale request, 400 for a
payload that is not our button, 404 for an unknown endpoint.
"""

from __future__ import annotations

import time
import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from common.errors import error_body
from webhooks.slack.actions import SlackPayloadError
from webhooks.slack.interactivity import SlackEndpointNotFound, slack_interaction_receive
from webhooks.slack.signature import SlackSignatureError
from webhooks.slack.tasks import slack_interaction_apply_later


@csrf_exempt  # Slack signs its requests instead: checked before anything else is read
@require_POST
def slack_interactivity(request: HttpRequest, endpoint_id: uuid.UUID) -> HttpResponse:
    try:
        received = slack_interaction_receive(
            endpoint_id=endpoint_id,
            body=request.body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
            now=time.time(),
        )
    except SlackEndpointNotFound as exc:
        return JsonResponse(error_body(exc.code, exc.message), status=404)
    except SlackSignatureError as exc:
        return JsonResponse(error_body("invalid_slack_signature", str(exc)), status=401)
    except SlackPayloadError as exc:
        return JsonResponse(error_body("invalid_slack_payload", str(exc), {"field": "payload"}), status=400)
    slack_interaction_apply_later(received)
    # An empty 200 tells Slack the press was taken; the outcome follows through response_url.
    return HttpResponse(status=200)
