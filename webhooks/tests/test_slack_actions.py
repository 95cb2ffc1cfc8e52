"""A Slack button press read into an action on an approval; anything else refused with why."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.slack.actions import SlackPayloadError, slack_action_parse

APPROVAL_ID = uuid.uuid4()


def press(action_id: str = "veto_approve", value: str = str(APPROVAL_ID), **extra) -> dict:
    payload = {
        "type": "block_actions",
        "user": {"id": "U123", "username": "alice", "team_id": "T9"},
        "team": {"id": "T9"},
        "container": {"type": "message", "message_ts": "1770000000.000100", "channel_id": "C42"},
        "response_url": "https://hooks.slack.com/actions/T9/1/abc",
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button"}],
    }
    payload.update(extra)
    return payload


def form(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.mark.parametrize(("action_id", "action"), [("veto_approve", "approve"), ("veto_deny", "deny")])
def test_parse__our_button__the_action_on_the_approval(action_id, action):
    parsed = slack_action_parse(form(press(action_id)))
    assert parsed.action == action
    assert parsed.approval_id == APPROVAL_ID
    assert (parsed.slack_user_id, parsed.slack_team_id) == ("U123", "T9")
    assert (parsed.channel_id, parsed.message_ts) == ("C42", "1770000000.000100")
    assert parsed.response_url == "https://hooks.slack.com/actions/T9/1/abc"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "no single payload"),
        (b"payload=1&payload=2", "no single payload"),
        (b"payload=%7Bnot-json", "not JSON"),
        (b"\xff\xfe", "not a form"),
        (form({"type": "view_submission"}), "only block_actions"),
        (form(press(actions=[])), "one action"),
        (form(press(actions=[{}, {}])), "one action"),
        (form(press("other_button")), "action_id"),
        (form(press(value="not-a-uuid")), "not an approval id"),
        (form(press(user={})), "user.id"),
        (form([1, 2]), "only block_actions"),
        (b"payload=" + b"x" * 70_000, "over"),
    ],
)
def test_parse__not_our_button__refused_with_why(body, why):
    with pytest.raises(SlackPayloadError, match=why):
        slack_action_parse(body)


@given(st.binary(max_size=300))
def test_parse__any_bytes__an_action_or_a_payload_error(body):
    # Never another exception: whatever arrives is either our button or a clear refusal
    try:
        slack_action_parse(body)
    except SlackPayloadError:
        pass
