"""Slack's v0 request signature: accepted only over the exact raw body, with the right secret,
within five minutes of the timestamp."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.slack.signature import (
    MAX_AGE_SECONDS,
    SlackSignatureError,
    slack_request_verify,
    slack_signature,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_770_000_000.0


def signed(body: bytes, *, timestamp: int = int(NOW), secret: str = SECRET) -> dict:
    stamp = str(timestamp)
    return {
        "signing_secret": SECRET,
        "timestamp": stamp,
        "signature": slack_signature(signing_secret=secret, timestamp=stamp, body=body),
        "body": body,
        "now": NOW,
    }


def test_signature__slack_documented_example__matches():
    # Given the example of Slack's "Verifying requests from Slack" page
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    # Then the signature is the one the page gives
    assert (
        slack_signature(signing_secret=SECRET, timestamp="1531420618", body=body)
        == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


def test_verify__signed_now__accepted():
    slack_request_verify(**signed(b"payload=%7B%7D"))


@pytest.mark.parametrize("age", [MAX_AGE_SECONDS + 1, -(MAX_AGE_SECONDS + 1), 86_400])
def test_verify__stale_or_ahead__refused(age):
    # Given a request signed correctly but at a time too far from now
    request = signed(b"payload=%7B%7D", timestamp=int(NOW) - age)
    # Then it is refused as stale, whatever the signature
    with pytest.raises(SlackSignatureError, match="old"):
        slack_request_verify(**request)


def test_verify__at_the_edge_of_five_minutes__accepted():
    slack_request_verify(**signed(b"x", timestamp=int(NOW) - MAX_AGE_SECONDS))


def test_verify__other_secret__refused():
    with pytest.raises(SlackSignatureError, match="does not match"):
        slack_request_verify(**signed(b"payload=%7B%7D", secret="another-secret"))


@given(body=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=199))
def test_verify__any_changed_byte__refused(body, flip):
    # Given a signed body, when one byte of it changes (or a byte is added)
    request = signed(body)
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    else:
        changed = b"x"
    # Then the signature no longer matches
    with pytest.raises(SlackSignatureError):
        slack_request_verify(**{**request, "body": changed})


@pytest.mark.parametrize(
    ("timestamp", "signature", "why"),
    [
        (None, "v0=abc", "required"),
        ("1770000000", None, "required"),
        ("", "v0=abc", "required"),
        ("17700000x0", "v0=abc", "Unix time"),
        ("١٧٧٠٠٠٠٠٠٠", "v0=abc", "Unix time"),  # digits, but not ASCII ones
        ("1770000000", "v0=é", "does not match"),
    ],
)
def test_verify__malformed_headers__refused_with_the_reason(timestamp, signature, why):
    with pytest.raises(SlackSignatureError, match=why):
        slack_request_verify(signing_secret=SECRET, timestamp=timestamp, signature=signature, body=b"", now=NOW)


def test_verify__endpoint_without_signing_secret__refused():
    with pytest.raises(SlackSignatureError, match="no Slack signing secret"):
        slack_request_verify(**{**signed(b""), "signing_secret": ""})
