"""The slack format: Block Kit's limits, escaping of what users wrote, and the approval
buttons and their retirement."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings

from webhooks.formats import render, slack
from webhooks.formats.text import units
from webhooks.messages import WebhookMessage
from webhooks.tests.format_messages import EVENTS, approval, decision, message, messages

# The only <...> token we write ourselves: Slack's date token. Anything else in angle brackets
# would be a mention (<!channel>, <@U1>) or a link (<http://x|y>) smuggled in by user text.
DATE_TOKEN = re.compile(r"<!date\^\d+\^\{date_short_pretty\} at \{time\}\|\d{4}-\d\d-\d\d \d\d:\d\d UTC>")


def _assert_block_kit_limits(built: dict[str, Any]) -> None:
    """Block Kit's published limits, checked on every block we can emit."""
    assert isinstance(built["text"], str) and 1 <= units(built["text"]) <= 3000
    blocks = built["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        assert units(block.get("block_id", "")) <= 255
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= units(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 1 <= units(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            for item in fields:
                assert 1 <= units(item["text"]) <= 2000
            if "accessory" in block:
                _assert_button(block["accessory"])
        elif kind == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for element in block["elements"]:
                _assert_button(element)
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert 1 <= units(element["text"]) <= 3000
        else:
            pytest.fail(f"unexpected block type {kind}")


def _assert_button(button: dict[str, Any]) -> None:
    assert button["type"] == "button"
    assert button["text"]["type"] == "plain_text"
    assert 1 <= units(button["text"]["text"]) <= 75
    assert units(button.get("value", "")) <= 2000
    assert 1 <= units(button["action_id"]) <= 255
    assert units(button.get("url", "")) <= 3000
    assert button.get("style", "primary") in ("primary", "danger")


def _mrkdwn_texts(built: dict[str, Any]) -> list[str]:
    texts = [built["text"]]
    for block in built["blocks"]:
        if block["type"] == "section":
            texts += [block["text"]["text"]] if "text" in block else []
            texts += [item["text"] for item in block.get("fields", [])]
        if block["type"] == "context":
            texts += [element["text"] for element in block["elements"]]
    return texts


def _field(built: dict[str, Any], label: str) -> str:
    for block in built["blocks"]:
        for item in block.get("fields", []):
            if item["text"].startswith(f"*{label}*\n"):
                return item["text"].removeprefix(f"*{label}*\n")
    raise AssertionError(f"no field {label}")


def _blocks(built: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [block for block in built["blocks"] if block["type"] == kind]


def test_slack__deny__shows_tool_decision_rule_reason_team_and_a_link() -> None:
    # Given a deny
    msg = message("deny")
    # When it is rendered for Slack
    built = json.loads(
        render(
            msg, format="slack", webhook_id="msg_1", secrets=[], routing_key="", timestamp=datetime.now(UTC)
        ).body
    )
    # Then the header names the tool and the fields carry what a reader needs
    assert _blocks(built, "header")[0]["text"]["text"] == "Denied: shell.exec"
    assert _field(built, "Tool") == "shell.exec"
    assert _field(built, "Decision") == "deny"
    assert _field(built, "Rule") == "Block rm -rf"
    assert _field(built, "Team") == "Payments"
    assert (_field(built, "Agent"), _field(built, "Model"), _field(built, "Environment")) == (
        "deploy-bot",
        "gpt-5",
        "production",
    )
    assert "*Reason*\nCommand deletes files recursively" in _mrkdwn_texts(built)
    # And one button opens the decision page, and nothing can be approved
    button = built["blocks"][1]["accessory"]
    assert button["url"] == msg.links["decision"]
    assert button["action_id"] == slack.OPEN_ACTION
    assert _blocks(built, "actions") == []


def test_slack__pending_approval__approve_and_deny_buttons_carry_the_approval_id() -> None:
    # Given a request for approval
    msg = message("require_approval")
    # When it is built
    built = slack.build_message(msg)
    # Then it has Approve (primary) and Deny (danger), each valued with the approval id
    [actions] = _blocks(built, "actions")
    approval_id = msg.approval.approval_id  # type: ignore[union-attr]
    assert actions["block_id"] == f"veto_approval:{approval_id}"
    assert [(b["action_id"], b["style"], b["value"], b["text"]["text"]) for b in actions["elements"]] == [
        ("veto_approve", "primary", approval_id, "Approve"),
        ("veto_deny", "danger", approval_id, "Deny"),
    ]
    # And the link button opens the approval page, not the decision page
    assert built["blocks"][1]["accessory"]["url"] == msg.links["approval"]
    _assert_block_kit_limits(built)


def test_slack__outcome_message__buttons_replaced_by_who_decided_and_when() -> None:
    # Given the request as it was posted, and the approval since approved by alice
    posted = message("require_approval")
    decided = replace(
        posted,
        approval=approval("approved", decided_at=datetime(2026, 12, 3, 12, 3, tzinfo=UTC)),
    )
    # When the message is retired
    retired = slack.outcome_message(decided)
    # Then where the buttons were, a context line says who approved it and when
    index = [block["type"] for block in slack.build_message(posted)["blocks"]].index("actions")
    outcome = retired["blocks"][index]
    assert outcome["type"] == "context"
    assert outcome["elements"][0]["text"] == (
        ":white_check_mark: Approved by *alice* "
        "<!date^1796299380^{date_short_pretty} at {time}|2026-12-03 12:03 UTC>"
    )
    assert _blocks(retired, "actions") == []
    # And the rest of the message is unchanged
    others = [block for i, block in enumerate(retired["blocks"]) if i != index and block["type"] != "section"]
    assert others == [
        block
        for i, block in enumerate(slack.build_message(posted)["blocks"])
        if i != index and block["type"] != "section"
    ]


@pytest.mark.parametrize(
    ("status", "decided_by", "expected"),
    [
        ("denied", "bob", ":no_entry: Denied by *bob* <!date^"),
        ("expired", "", ":hourglass: Expired <!date^"),
    ],
)
def test_slack__outcome_message__denied_or_expired__says_so(
    status: str, decided_by: str, expected: str
) -> None:
    # Given an approval denied by bob, or expired
    msg = message("approval.resolved", approval=approval(status, decided_by=decided_by))
    # When it is retired
    [outcome] = [
        b for b in slack.outcome_message(msg)["blocks"] if b.get("block_id", "").startswith("veto_outcome:")
    ]
    # Then the line says what became of it
    assert outcome["elements"][0]["text"].startswith(expected)


def test_slack__require_approval_already_decided__no_buttons() -> None:
    # Given a retry of a request whose approval was decided meanwhile
    msg = message("require_approval", approval=approval("denied", decided_by="bob"))
    # When it is built
    built = slack.build_message(msg)
    # Then it shows the outcome, not buttons that would only be refused
    assert _blocks(built, "actions") == []
    assert any("Denied by *bob*" in text for text in _mrkdwn_texts(built))


@pytest.mark.parametrize("event", EVENTS)
def test_slack__each_event__within_limits_and_never_buttons_unless_pending(event: str) -> None:
    # Given a message of each event
    built = slack.build_message(message(event))
    # Then it is valid Block Kit, and only a pending request asks for a decision
    _assert_block_kit_limits(built)
    assert bool(_blocks(built, "actions")) is (event == "require_approval")


def test_slack__user_text_with_mentions_and_links__escaped() -> None:
    # Given a rule and a reason written to ping the channel and plant a link
    msg = message(
        "deny",
        decision=decision(rule_name="<!channel> & <@U123>", reason="see <http://evil.example|the docs> & go"),
    )
    # When it is built
    built = slack.build_message(msg)
    # Then they are shown as written, and nothing pings or links
    assert _field(built, "Rule") == "&lt;!channel&gt; &amp; &lt;@U123&gt;"
    assert "*Reason*\nsee &lt;http://evil.example|the docs&gt; &amp; go" in _mrkdwn_texts(built)


def test_slack__long_reason__clipped_with_an_ellipsis_never_inside_an_entity() -> None:
    # Given a reason of 2,000 ampersands (10,000 characters once escaped)
    msg = message("deny", decision=decision(reason="&" * 2000))
    # When it is built
    [reason] = [t for t in _mrkdwn_texts(slack.build_message(msg)) if t.startswith("*Reason*")]
    # Then it fits a section, ends with an ellipsis, and every entity before it is whole
    assert units(reason) <= 3000
    body = reason.removeprefix("*Reason*\n")
    assert body.endswith("…")
    assert body.removesuffix("…") == "&amp;" * (len(body.removesuffix("…")) // 5)


def test_slack__astral_characters__counted_as_two() -> None:
    # Given a header's tool of 100 emoji (100 code points, 200 UTF-16 units)
    msg = message("deny", decision=decision(tool_name="😀" * 100))
    # When it is built
    header = slack.build_message(msg)["blocks"][0]["text"]["text"]
    # Then the header is clipped to 150 units, not 150 code points
    assert units(header) <= 150 and header.endswith("…")
    assert len(header) < 150


def test_slack__link_too_long_for_a_button__no_button() -> None:
    # Given a link longer than a button's url may be
    msg = message("deny", links={"decision": "https://veto.example.com/" + "a" * 3000})
    # When it is built
    # Then there is no link button rather than a broken one
    assert "accessory" not in slack.build_message(msg)["blocks"][1]


def test_slack__test_send__marked_in_header_and_footer() -> None:
    # Given a test send
    built = slack.build_message(message("deny", test=True))
    # Then nobody mistakes it for a real deny
    assert built["blocks"][0]["text"]["text"].startswith("[Test] ")
    assert built["blocks"][-1]["elements"][0]["text"].endswith("test send")


@settings(max_examples=300, deadline=None)
@given(msg=messages())
def test_slack__any_message__within_block_kit_limits_and_no_tokens_but_dates(msg: WebhookMessage) -> None:
    # Given any message, every text field long or odd
    for built in (slack.build_message(msg), slack.outcome_message(msg)):
        # Then both its forms are valid Block Kit
        _assert_block_kit_limits(built)
        # And no angle-bracket token reaches Slack except the dates we write
        for text in _mrkdwn_texts(built):
            assert "<" not in DATE_TOKEN.sub("", text) and ">" not in DATE_TOKEN.sub("", text)


def test_slack__policy_published__links_the_version() -> None:
    # Given a publish, whose only link is the policy version's page
    msg = message("policy.published")
    # When it is built
    built = slack.build_message(msg)
    # Then the header names the version, the fields who published it, and the button opens it
    assert built["blocks"][0]["text"]["text"] == "Policy published: v7"
    assert _field(built, "Published by") == "bob"
    accessory = built["blocks"][1]["accessory"]
    assert (accessory["url"], accessory["text"]["text"]) == (msg.links["policy"], "Open policy")


@pytest.mark.parametrize(
    ("status", "header"),
    [("approved", "Approved: payments.refund"), ("denied", "Approval denied: payments.refund")],
)
def test_slack__approval_resolved__header_says_the_outcome(status: str, header: str) -> None:
    msg = message("approval.resolved", approval=approval(status))
    assert slack.build_message(msg)["blocks"][0]["text"]["text"] == header
