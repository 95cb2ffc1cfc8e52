"""/v1/webhooks through DRF's test client: CRUD, bad input naming its field, the secret shown
once, rotation's overlap, the delivery log, test sends and re-sends, and the trail."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tenancy.models import ApiKey
from tests.factories import TeamFactory, api_key_for, record_decision
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSecret

pytestmark = pytest.mark.django_db

# A public address written as an IP: the SSRF guard lets it through without a DNS lookup.
PUBLIC_URL = "https://93.184.215.14/hooks/veto"
MANAGE = (ApiKey.Scope.WEBHOOKS_MANAGE.value,)


@pytest.fixture
def team():
    return TeamFactory(slug="payments")


@pytest.fixture
def api(team) -> APIClient:
    return APIClient(HTTP_X_VETO_API_KEY=api_key_for(team, scopes=MANAGE))


def create(api: APIClient, **fields):
    body = {"name": "SIEM", "url": PUBLIC_URL, "events": ["deny", "require_approval"], **fields}
    return api.post("/v1/webhooks", body, format="json")


def trail_changes(team) -> list[str]:
    return [
        json.loads(e.record)["details"]["change"]
        for e in AuditEvent.objects.filter(team=team, kind=AuditEvent.Kind.TEAM_CHANGED).order_by("sequence")
    ]


def test_create__valid_body__201_with_the_secret_once_and_the_endpoint_listed_without_it(api, team):
    # Given a key with webhooks:manage
    # When it creates an endpoint
    response = create(api, min_severity="high")
    # Then the answer carries a whsec_ secret of 32 random bytes, and the endpoint as stored
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) == 32
    assert body["events"] == ["deny", "require_approval"]
    assert body["min_severity"] == "high"
    assert body["enabled"] is True and body["disabled_reason"] is None
    assert WebhookSecret.objects.get(endpoint_id=body["id"]).secret == body["secret"]
    # And neither the list nor a read shows the secret again
    listed = api.get("/v1/webhooks").json()
    assert [e["id"] for e in listed["data"]] == [body["id"]]
    assert body["secret"] not in json.dumps(listed)
    assert body["secret"] not in api.get(f"/v1/webhooks/{body['id']}").content.decode()
    # And the trail says who created it
    assert trail_changes(team) == ["webhook.created"]


def test_create__team_with_history__cursors_start_at_the_streams_heads(api, team):
    # Given a team with two decisions and a trail entry already
    record_decision(team, tool_name="refund")
    record_decision(team, tool_name="refund")
    create(api, name="first")
    # When another endpoint is created
    second = create(api, name="second").json()
    # Then it starts after everything already there (it receives what happens from now on)
    endpoint = WebhookEndpoint.objects.get(pk=second["id"])
    assert endpoint.decisions_cursor == 2
    assert endpoint.events_cursor == 1  # the first endpoint's creation


def test_create__pagerduty_without_url__default_events_api_url_and_routing_key_required(api):
    # Given a PagerDuty endpoint without a routing key
    missing = create(api, format="pagerduty", url="")
    # Then it is refused naming routing_key
    assert missing.status_code == 400
    assert missing.json()["error"]["details"]["field"] == "routing_key"
    # When the key is given and the url left out
    body = {"name": "On call", "format": "pagerduty", "routing_key": "R0UT1NGKEY", "events": ["deny"]}
    created = api.post("/v1/webhooks", body, format="json")
    # Then the Events API v2 URL is used
    assert created.status_code == 201, created.content
    assert created.json()["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert created.json()["routing_key"] == "R0UT1NGKEY"


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"url": "ftp://93.184.215.14/x"}, "url", "must start with"),
        ({"url": "syslog+udp://93.184.215.14:514"}, "url", "cef format only"),
        ({"url": "https://10.1.2.3/hook"}, "url", "private address"),
        ({"url": "http://127.0.0.1:8080/hook"}, "url", "loopback"),
        ({"url": "https://169.254.169.254/latest"}, "url", "metadata"),
        ({"url": "https://93.184.215.14/" + "x" * 2001}, "url", "2000"),
        ({"url": "https://user:pw@93.184.215.14/"}, "url", "password"),
        ({"events": []}, "events", "empty"),
        ({"events": ["deny", "nope"]}, "events[1]", "not a valid choice"),
        ({"events": "deny"}, "events", "list"),
        ({"format": "xml"}, "format", "not a valid choice"),
        ({"min_severity": "severe"}, "min_severity", "not a valid choice"),
        ({"routing_key": "abc"}, "routing_key", "only the pagerduty format"),
        ({"name": ""}, "name", "blank"),
        ({"min_severty": "high"}, "min_severty", "unknown field"),
        ({"enabled": "perhaps"}, "enabled", "boolean"),
    ],
)
def test_create__bad_input__400_naming_the_field_and_nothing_written(api, team, fields, field, says):
    # When an endpoint is created with one bad value
    response = create(api, **fields)
    # Then the answer is a 400 naming the field and saying why, and nothing is stored
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["details"]["field"] == field
    assert says in error["message"]
    assert WebhookEndpoint.objects.count() == 0
    assert trail_changes(team) == []


def test_create__cef_over_syslog__accepted_with_host_and_port(api):
    response = create(api, format="cef", url="syslog+tcp://93.184.215.14:6514")
    assert response.status_code == 201, response.content
    refused = create(api, format="cef", url="syslog+udp://93.184.215.14")
    assert refused.status_code == 400
    assert "port" in refused.json()["error"]["message"]


def test_create__body_not_an_object__400(api):
    response = api.post("/v1/webhooks", ["name"], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "(body)"


def test_update__patch_some_fields__only_those_change_and_the_trail_names_them(api, team):
    # Given an endpoint
    endpoint = create(api).json()
    # When its severity and events are changed
    response = api.patch(
        f"/v1/webhooks/{endpoint['id']}", {"min_severity": "critical", "events": ["deny"]}, format="json"
    )
    # Then those change, the rest stays, and the trail names the fields (not the URL)
    assert response.status_code == 200, response.content
    assert response.json()["min_severity"] == "critical"
    assert response.json()["events"] == ["deny"]
    assert response.json()["name"] == "SIEM"
    last = AuditEvent.objects.filter(team=team).order_by("-sequence").first()
    details = json.loads(last.record)["details"]
    assert details["change"] == "webhook.updated"
    assert details["fields"] == ["events", "min_severity"]
    assert PUBLIC_URL not in last.record


def test_update__disable_then_enable__trail_entries_and_the_failure_state_cleared(api, team):
    # Given an endpoint the engine disabled after failing
    endpoint = create(api).json()
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(
        enabled=False, disabled_reason="failing", failing_since=timezone.now() - timedelta(days=5)
    )
    # When an admin enables it
    response = api.patch(f"/v1/webhooks/{endpoint['id']}", {"enabled": True}, format="json")
    # Then it is enabled with no reason and no failure clock
    assert response.json()["enabled"] is True
    assert response.json()["disabled_reason"] is None and response.json()["failing_since"] is None
    # And disabling it by hand is recorded as such
    api.patch(f"/v1/webhooks/{endpoint['id']}", {"enabled": False}, format="json")
    assert trail_changes(team) == ["webhook.created", "webhook.enabled", "webhook.disabled"]


def test_update__bad_value__400_and_the_endpoint_unchanged(api):
    endpoint = create(api).json()
    response = api.patch(f"/v1/webhooks/{endpoint['id']}", {"url": "https://192.168.1.5/x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "url"
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == PUBLIC_URL


def test_update__format_to_pagerduty_without_key__400_naming_routing_key(api):
    endpoint = create(api).json()
    response = api.patch(f"/v1/webhooks/{endpoint['id']}", {"format": "pagerduty"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "routing_key"


def test_replace__put__unspecified_fields_take_their_defaults(api):
    endpoint = create(api, min_severity="high").json()
    response = api.put(
        f"/v1/webhooks/{endpoint['id']}",
        {"name": "Renamed", "url": PUBLIC_URL, "events": ["deny"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["min_severity"]) == ("Renamed", "info")


def test_delete__endpoint_with_deliveries__gone_with_them_and_recorded(api, team):
    # Given an endpoint with a test delivery
    endpoint = create(api).json()
    api.post(f"/v1/webhooks/{endpoint['id']}/test", {}, format="json")
    # When it is deleted
    response = api.delete(f"/v1/webhooks/{endpoint['id']}")
    # Then it is gone with its deliveries and secrets, and a second delete is a 404
    assert response.status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert not WebhookDelivery.objects.exists() and not WebhookSecret.objects.exists()
    assert api.delete(f"/v1/webhooks/{endpoint['id']}").status_code == 404
    assert trail_changes(team)[-1] == "webhook.deleted"


def test_rotate__default_overlap__new_secret_once_and_the_old_one_signs_for_24_hours(api):
    # Given an endpoint and its secret
    created = create(api).json()
    # When the secret is rotated
    before = timezone.now()
    response = api.post(f"/v1/webhooks/{created['id']}/rotate-secret", {}, format="json")
    # Then the answer has a new secret, and both are live: the old one until a day from now
    assert response.status_code == 200, response.content
    rotated = response.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    old = WebhookSecret.objects.get(secret=created["secret"])
    assert before + timedelta(hours=24) <= old.expires_at <= timezone.now() + timedelta(hours=24)
    assert WebhookSecret.objects.get(secret=rotated["secret"]).expires_at is None
    from webhooks.selectors import live_secrets_of

    live = [s.secret for s in live_secrets_of(endpoint=WebhookEndpoint.objects.get(pk=created["id"]))]
    assert live == [created["secret"], rotated["secret"]]
    # And the new secret is not readable afterwards
    assert rotated["secret"] not in api.get(f"/v1/webhooks/{created['id']}").content.decode()


def test_rotate__zero_overlap__the_old_secret_stops_at_once(api):
    created = create(api).json()
    rotated = api.post(
        f"/v1/webhooks/{created['id']}/rotate-secret", {"overlap_seconds": 0}, format="json"
    ).json()
    from webhooks.selectors import live_secrets_of

    live = [s.secret for s in live_secrets_of(endpoint=WebhookEndpoint.objects.get(pk=created["id"]))]
    assert live == [rotated["secret"]]


@pytest.mark.parametrize("overlap", [-1, 7 * 86400 + 1, "soon"])
def test_rotate__overlap_out_of_bounds__400_naming_overlap_seconds(api, overlap):
    created = create(api).json()
    response = api.post(
        f"/v1/webhooks/{created['id']}/rotate-secret", {"overlap_seconds": overlap}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "overlap_seconds"
    assert WebhookSecret.objects.count() == 1


def test_test_send__enabled_endpoint__a_pending_test_delivery_due_now_and_recorded(
    api, team, django_capture_on_commit_callbacks
):
    # Given an endpoint
    created = create(api, min_severity="medium").json()
    # When a test is sent (the engine's enqueue is scheduled after commit)
    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(
            f"/v1/webhooks/{created['id']}/test", {"event": "require_approval"}, format="json"
        )
    # Then a test delivery of that event exists, due now, and its sending was scheduled
    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get(pk=response.json()["id"])
    assert delivery.source_key.startswith("test:")
    assert delivery.event == "require_approval" and delivery.severity == "medium"
    assert delivery.message["test"] is True and delivery.message["decision"]["decision"] == "require_approval"
    assert delivery.status == "pending" and delivery.next_attempt_at <= timezone.now()
    assert response.json()["webhook_id"] == f"msg_{delivery.id.hex}"
    assert trail_changes(team)[-1] == "webhook.test_sent"


def test_test_send__disabled_endpoint__409_and_no_delivery(api):
    created = create(api, enabled=False).json()
    response = api.post(f"/v1/webhooks/{created['id']}/test", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "webhook_disabled"
    assert not WebhookDelivery.objects.exists()


def test_deliveries__attempts_listed_newest_delivery_first_with_keyset_pages(api):
    # Given an endpoint with three test deliveries, the oldest one with two attempts
    created = create(api).json()
    ids = [api.post(f"/v1/webhooks/{created['id']}/test", {}, format="json").json()["id"] for _ in range(3)]
    now = timezone.now()
    for n, code in ((1, 503), (2, 200)):
        WebhookAttempt.objects.create(
            delivery_id=ids[0],
            number=n,
            status_code=code,
            latency_ms=12.5,
            response_snippet="busy" if code == 503 else "ok",
            next_attempt_at=now + timedelta(seconds=5) if code == 503 else None,
        )
    # When the log is read two at a time
    first = api.get(f"/v1/webhooks/{created['id']}/deliveries", {"limit": 2}).json()
    second = api.get(
        f"/v1/webhooks/{created['id']}/deliveries", {"limit": 2, "before": first["next_before"]}
    ).json()
    # Then the newest come first, the next page holds the rest, and attempts are in order
    assert [d["id"] for d in first["data"]] == [ids[2], ids[1]]
    assert [d["id"] for d in second["data"]] == [ids[0]] and second["next_before"] is None
    attempts = second["data"][0]["attempts"]
    assert [(a["number"], a["status_code"], a["response_snippet"]) for a in attempts] == [
        (1, 503, "busy"),
        (2, 200, "ok"),
    ]
    assert attempts[0]["latency_ms"] == 12.5 and attempts[0]["next_attempt_at"] is not None


def test_resend__failed_delivery__same_delivery_pending_again_and_not_yet_sent(
    api, team, django_capture_on_commit_callbacks
):
    # Given a delivery that failed
    created = create(api).json()
    delivery_id = api.post(f"/v1/webhooks/{created['id']}/test", {}, format="json").json()["id"]
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status="failed", next_attempt_at=None, attempt_count=8
    )
    # When it is re-sent
    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(
            f"/v1/webhooks/{created['id']}/deliveries/{delivery_id}/resend", {}, format="json"
        )
    # Then the same delivery (the same webhook-id) is pending and due now
    assert response.status_code == 202, response.content
    assert response.json()["id"] == delivery_id
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "pending" and delivery.next_attempt_at <= timezone.now()
    assert WebhookDelivery.objects.count() == 1
    assert trail_changes(team)[-1] == "webhook.resent"


def test_resend__delivery_of_another_endpoint__404(api):
    one = create(api, name="one").json()
    two = create(api, name="two").json()
    delivery_id = api.post(f"/v1/webhooks/{one['id']}/test", {}, format="json").json()["id"]
    response = api.post(f"/v1/webhooks/{two['id']}/deliveries/{delivery_id}/resend", {}, format="json")
    assert response.status_code == 404


def test_api__another_teams_endpoint__404_and_unchanged(api, team):
    # Given another team's endpoint
    other = TeamFactory(slug="other")
    other_api = APIClient(HTTP_X_VETO_API_KEY=api_key_for(other, scopes=MANAGE))
    theirs = create(other_api).json()
    # When this team's key reads, changes, rotates, tests or deletes it
    answers = [
        api.get(f"/v1/webhooks/{theirs['id']}").status_code,
        api.patch(f"/v1/webhooks/{theirs['id']}", {"name": "mine"}, format="json").status_code,
        api.post(f"/v1/webhooks/{theirs['id']}/rotate-secret", {}, format="json").status_code,
        api.post(f"/v1/webhooks/{theirs['id']}/test", {}, format="json").status_code,
        api.get(f"/v1/webhooks/{theirs['id']}/deliveries").status_code,
        api.delete(f"/v1/webhooks/{theirs['id']}").status_code,
        api.get(f"/v1/webhooks/{uuid.uuid4()}").status_code,
        api.get("/v1/webhooks/not-a-uuid").status_code,
    ]
    # Then every answer is a 404, its list is not in ours, and nothing of it changed
    assert answers == [404] * 8
    assert api.get("/v1/webhooks").json() == {"data": []}
    assert WebhookEndpoint.objects.get(pk=theirs["id"]).name == "SIEM"
    assert WebhookSecret.objects.filter(endpoint_id=theirs["id"]).count() == 1


def test_api__key_without_webhooks_manage__403_naming_the_scope(team):
    api = APIClient(HTTP_X_VETO_API_KEY=api_key_for(team, scopes=("admin", "decisions:read")))
    response = api.get("/v1/webhooks")
    assert response.status_code == 403
    assert "webhooks:manage" in response.json()["error"]["message"]


class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers each request with the next of ``codes``
    (then 200) and keeps what it was sent."""

    def __init__(self, codes: list[int]) -> None:
        import http.server
        import threading

        self.codes = list(codes)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.codes.pop(0) if receiver.codes else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.VETO_WEBHOOK_RETRY_SCHEDULE = (0, 0, 0)
    box = Receiver([])
    yield box
    box.close()


def test_test_send__live_receiver__delivered_once_signed_with_the_endpoint_secret(
    api, receiver, django_capture_on_commit_callbacks
):
    # Given a generic endpoint at a receiver on this machine
    created = create(api, url=receiver.url).json()
    # When a test is sent and the transaction's after-commit work runs (Celery is eager here)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/v1/webhooks/{created['id']}/test", {}, format="json")
    # Then the receiver got it once, with the delivery's webhook-id, verifiable with the secret
    from standardwebhooks.webhooks import Webhook

    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert headers["webhook-id"] == response.json()["webhook_id"]
    Webhook(created["secret"]).verify(body, headers)
    delivery = WebhookDelivery.objects.get(pk=response.json()["id"])
    assert delivery.status == "delivered"
    assert [a.status_code for a in delivery.attempts.all()] == [200]


def test_resend__live_receiver__sent_again_with_the_same_webhook_id_as_a_manual_attempt(
    api, receiver, django_capture_on_commit_callbacks
):
    # Given a test delivery the receiver got
    created = create(api, url=receiver.url).json()
    with django_capture_on_commit_callbacks(execute=True):
        delivery = api.post(f"/v1/webhooks/{created['id']}/test", {}, format="json").json()
    # When it is re-sent by hand
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/v1/webhooks/{created['id']}/deliveries/{delivery['id']}/resend", {}, format="json"
        )
    # Then the receiver got it twice under one webhook-id, the second attempt marked manual
    assert response.status_code == 202
    assert [h["webhook-id"] for h, _ in receiver.requests] == [delivery["webhook_id"]] * 2
    attempts = WebhookDelivery.objects.get(pk=delivery["id"]).attempts.order_by("number")
    assert [(a.status_code, a.manual) for a in attempts] == [(200, False), (200, True)]


SLACK_TOKEN = "xoxb-1111-2222-secret-token"
SLACK_SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"


def test_slack__bot_token_and_channel_without_url__write_only_credentials_and_the_request_url(api, team):
    # When a Slack endpoint is created with a bot token, a signing secret and a channel, no URL
    body = {
        "name": "Approvals channel",
        "format": "slack",
        "events": ["require_approval"],
        "slack_bot_token": SLACK_TOKEN,
        "slack_signing_secret": SLACK_SIGNING,
        "slack_channel": "C0123ABCD",
    }
    response = api.post("/v1/webhooks", body, format="json")
    # Then it is stored; the answer says the credentials are set without showing them, and
    # gives the Request URL for the Slack app
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["url"], created["slack_channel"]) == ("", "C0123ABCD")
    assert created["slack_bot_token_set"] is True and created["slack_signing_secret_set"] is True
    assert created["slack_interactivity_url"].endswith(f"/v1/slack/interactivity/{created['id']}")
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert (endpoint.slack_bot_token, endpoint.slack_signing_secret) == (SLACK_TOKEN, SLACK_SIGNING)
    # And no read, nor the trail, holds them
    reads = (
        response.content + api.get(f"/v1/webhooks/{created['id']}").content + api.get("/v1/webhooks").content
    )
    trail = "".join(AuditEvent.objects.filter(team=team).values_list("record", flat=True))
    for secret in (SLACK_TOKEN, SLACK_SIGNING):
        assert secret not in reads.decode() and secret not in trail


def test_slack__patch_without_the_token__kept_blank_clears_it_and_other_formats_refuse_it(api):
    # Given a Slack endpoint with a bot token
    created = create(api, format="slack", slack_bot_token=SLACK_TOKEN, slack_channel="C1").json()
    # When it is renamed without naming the token, then the token is kept
    api.patch(f"/v1/webhooks/{created['id']}", {"name": "Renamed"}, format="json")
    assert WebhookEndpoint.objects.get(pk=created["id"]).slack_bot_token == SLACK_TOKEN
    # When it is cleared with "", it is gone
    cleared = api.patch(f"/v1/webhooks/{created['id']}", {"slack_bot_token": ""}, format="json").json()
    assert cleared["slack_bot_token_set"] is False
    # And a generic endpoint refuses Slack fields, naming them
    refused = create(api, slack_channel="C1")
    assert refused.status_code == 400
    assert refused.json()["error"]["details"]["field"] == "slack_channel"


def test_slack__format_changed_to_generic__slack_fields_cleared(api):
    created = create(api, format="slack", slack_bot_token=SLACK_TOKEN, slack_channel="C1").json()
    changed = api.patch(f"/v1/webhooks/{created['id']}", {"format": "generic"}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["slack_bot_token_set"] is False and changed.json()["slack_channel"] is None
    assert changed.json()["slack_interactivity_url"] is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": "", "slack_channel": "C1"}, "url"),  # a channel without a token: nowhere to post
        ({"slack_bot_token": "not-a-token"}, "slack_bot_token"),
        ({"slack_channel": "general chat"}, "slack_channel"),
    ],
)
def test_slack__bad_input__400_naming_the_field(api, fields, field):
    response = create(api, format="slack", **fields)
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == field
