"""Slack's request signature (``X-Slack-Signature: v0=<hex HMAC-SHA256>`` over
``v0:<X-Slack-Request-Timestamp>:<raw body>`` with the app's signing secret), checked over the
raw bytes before the body is parsed, and refused when older than five minutes so a captured
request cannot be replayed later (https://api.slack.com/authentication/verifying-requests-from-slack).

Pure: the caller passes the clock.
"""

from __future__ import annotations

import hashlib
import hmac

# Slack's own advice: refuse requests whose timestamp is more than five minutes from now.
MAX_AGE_SECONDS = 300
VERSION = "v0"


class SlackSignatureError(Exception):
    """Why a request is not Slack's (or is too old to act on): said in the 401 body."""


def slack_signature(*, signing_secret: str, timestamp: str, body: bytes) -> str:
    base = f"{VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def slack_request_verify(
    *, signing_secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> None:
    """Raise SlackSignatureError unless ``signature`` is Slack's for ``body`` at ``timestamp``,
    and ``timestamp`` is within MAX_AGE_SECONDS of ``now`` (either side: a clock ahead is as
    suspicious as one behind)."""
    if not signing_secret:
        raise SlackSignatureError("this endpoint has no Slack signing secret")
    if not timestamp or not signature:
        raise SlackSignatureError("X-Slack-Request-Timestamp and X-Slack-Signature are required")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SlackSignatureError("X-Slack-Request-Timestamp is not a Unix time")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise SlackSignatureError(f"the request is more than {MAX_AGE_SECONDS} s old (or ahead)")
    expected = slack_signature(signing_secret=signing_secret, timestamp=timestamp, body=body)
    # Compared as bytes: a non-ASCII header would make compare_digest on str raise.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SlackSignatureError("the signature does not match")
