"""The generic format: Standard Webhooks' envelope and signature, checked with the
``standardwebhooks`` package a receiver would use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from webhooks.formats import Rendered, UnknownFormat, render
from webhooks.messages import WebhookMessage
from webhooks.tests.format_messages import EVENTS, message, messages, new_secret

WEBHOOK_ID = "msg_2b1f0c5e8d7a4f3b9c6e1d0a2b3c4d5e"


def _render(msg: WebhookMessage, secrets: list[str], timestamp: datetime | None = None) -> Rendered:
    return render(
        msg,
        format="generic",
        webhook_id=WEBHOOK_ID,
        secrets=secrets,
        routing_key="",
        timestamp=timestamp or datetime.now(UTC),
    )


@pytest.mark.parametrize("event", EVENTS)
def test_generic__each_event__envelope_round_trips_to_the_message(event: str) -> None:
    # Given a message of each event
    msg = message(event)
    # When it is rendered
    rendered = _render(msg, [new_secret()])
    # Then the body is the Standard Webhooks envelope whose data is the message itself
    payload = json.loads(rendered.body)
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == event
    assert payload["timestamp"] == "2026-12-03T12:00:05.250000Z"
    assert WebhookMessage.from_json(payload["data"]) == msg
    assert rendered.headers["Content-Type"] == "application/json"


def test_generic__two_live_secrets__each_verifies_alone() -> None:
    # Given an endpoint in a rotation's overlap: an old and a new secret
    old, new = new_secret(24), new_secret(64)
    # When a delivery is rendered with both
    rendered = _render(message("deny"), [old, new])
    # Then the header holds one v1 signature per secret, and a receiver holding either verifies
    assert [part.split(",")[0] for part in rendered.headers["webhook-signature"].split(" ")] == ["v1", "v1"]
    for secret in (old, new):
        assert Webhook(secret).verify(rendered.body, rendered.headers)["type"] == "deny"


def test_generic__secret_not_among_the_signers__is_refused() -> None:
    # Given a delivery signed with one secret
    rendered = _render(message("deny"), [new_secret()])
    # When a receiver holding another secret verifies it
    # Then it is refused
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(rendered.body, rendered.headers)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body.replace(b'"deny"', b'"allow"', 1), headers),
        lambda body, headers: (body + b" ", headers),
        lambda body, headers: (body, {**headers, "webhook-id": "msg_other"}),
        lambda body, headers: (
            body,
            {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)},
        ),
    ],
    ids=["changed body", "appended byte", "other id", "other timestamp"],
)
def test_generic__tampered_request__is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    # Given a signed delivery
    secret = new_secret()
    rendered = _render(message("deny"), [secret])
    # When its body or a signed header is changed on the way
    body, headers = tamper(rendered.body, rendered.headers)
    # Then the signature no longer verifies
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_generic__timestamp_in_another_zone__signs_the_same_instant() -> None:
    # Given one attempt time written in UTC and in UTC+5
    instant = datetime.now(UTC).replace(microsecond=0)
    shifted = instant.astimezone(timezone(timedelta(hours=5)))
    secret = new_secret()
    # When rendered with each
    in_utc, in_zone = _render(message("deny"), [secret], instant), _render(message("deny"), [secret], shifted)
    # Then the header is the instant's unix seconds and both verify (standardwebhooks would
    # shift an aware non-UTC time by its offset if handed one)
    assert in_zone.headers == in_utc.headers
    assert in_zone.headers["webhook-timestamp"] == str(int(instant.timestamp()))
    Webhook(secret).verify(in_zone.body, in_zone.headers)


def test_generic__retry__same_body_and_id_new_timestamp() -> None:
    # Given the same delivery rendered for two attempts a minute apart
    first_at = datetime.now(UTC) - timedelta(minutes=1)
    msg = message("require_approval")
    first, retry = (
        _render(msg, [new_secret()], first_at),
        _render(msg, [new_secret()], first_at + timedelta(minutes=1)),
    )
    # Then a receiver sees the same body and webhook-id (to deduplicate) and the attempt's time
    assert first.body == retry.body
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == WEBHOOK_ID
    assert int(retry.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 60


def test_render__unknown_format__names_the_known_ones() -> None:
    # When an unknown format is asked for
    # Then the error says which formats exist
    with pytest.raises(UnknownFormat, match="generic, slack, pagerduty, cef"):
        render(
            message("deny"),
            format="xml",
            webhook_id=WEBHOOK_ID,
            secrets=[],
            routing_key="",
            timestamp=datetime.now(UTC),
        )


@settings(max_examples=150, deadline=None)
@given(msg=messages())
def test_generic__any_message__verifies_and_round_trips(msg: WebhookMessage) -> None:
    # Given any message, with odd text (non-ASCII, newlines, quotes) in every field
    secret = new_secret()
    # When rendered and verified by a receiver
    payload = Webhook(secret).verify(*_unpack(_render(msg, [secret])))
    # Then it verifies and carries the message unchanged
    assert WebhookMessage.from_json(payload["data"]) == msg


def _unpack(rendered: Rendered) -> tuple[bytes, dict[str, str]]:
    return rendered.body, rendered.headers


@pytest.mark.parametrize("fmt", ["slack", "pagerduty", "cef"])
def test_render__every_format__signed_the_same_way(fmt: str) -> None:
    # Given an endpoint of another format, in a rotation's overlap
    old, new = new_secret(), new_secret()
    # When a delivery is rendered
    rendered = render(
        message("require_approval"),
        format=fmt,
        webhook_id=WEBHOOK_ID,
        secrets=[old, new],
        routing_key="R0123456789abcdef0123456789abcd",
        timestamp=datetime.now(UTC),
    )
    # Then its body verifies with either secret, so a receiver behind a proxy can check it too
    for secret in (old, new):
        Webhook(secret).verify(rendered.body, rendered.headers, json_parse=False)
    assert rendered.headers["webhook-id"] == WEBHOOK_ID


def test_render__no_live_secret__no_signature_header() -> None:
    # Given an endpoint with no live secret (never expected, but not a crash)
    rendered = _render(message("deny"), [])
    # Then nothing claims a signature
    assert "webhook-signature" not in rendered.headers
    assert rendered.headers["webhook-id"] == WEBHOOK_ID
