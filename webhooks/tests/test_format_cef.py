"""The cef format, read back by the strict parser in cef_parser.py (and that parser checked
against the spec's own examples, so it is not a mirror of the code it tests)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings

from webhooks.formats import cef, render
from webhooks.messages import PolicyFacts, WebhookMessage
from webhooks.tests.cef_parser import CEFError, parse
from webhooks.tests.format_messages import AT, EVENTS, decision, message, messages

WEBHOOK_ID = "msg_2b1f0c5e8d7a4f3b9c6e1d0a2b3c4d5e"


def _line(msg: WebhookMessage) -> str:
    rendered = render(
        msg, format="cef", webhook_id=WEBHOOK_ID, secrets=[], routing_key="", timestamp=datetime.now(UTC)
    )
    assert rendered.headers["Content-Type"] == "text/plain; charset=utf-8"
    return rendered.body.decode()


# The parser first: the spec's examples are read as the spec says, and each rule it states
# refuses a line that breaks it.


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [
        (
            "CEF:0|security|threatmanager|1.0|100|detected a \\| in message|10|src=10.0.0.1",
            "name",
            "detected a | in message",
        ),
        (
            "CEF:0|security|threatmanager|1.0|100|detected a \\\\ in packet|10|src=10.0.0.1",
            "name",
            "detected a \\ in packet",
        ),
        (
            "CEF:0|security|threatmanager|1.0|100|detected = in message|10|src=10.0.0.1",
            "name",
            "detected = in message",
        ),
        (
            "CEF:0|security|threatmanager|1.0|100|x|10|src=10.0.0.1 act=blocked a | dst=1.1.1.1",
            "act",
            "blocked a |",
        ),
        (
            "CEF:0|security|threatmanager|1.0|100|x|10|src=10.0.0.1 act=blocked a \\\\ dst=1.1.1.1",
            "act",
            "blocked a \\",
        ),
        (
            "CEF:0|security|threatmanager|1.0|100|x|10|src=10.0.0.1 act=blocked a \\= dst=1.1.1.1",
            "act",
            "blocked a =",
        ),
        (
            "CEF:0|security|threatmanager|1.0|100|x|10|msg=Detected a threat.\\n No action needed.",
            "msg",
            "Detected a threat.\n No action needed.",
        ),
        ("CEF:0|security|threatmanager|1.0|100|x|10|", "extension", {}),
    ],
)
def test_cef_parser__spec_examples__read_as_the_spec_says(line: str, field: str, expected: object) -> None:
    event = parse(line)
    assert (getattr(event, field) if field in ("name", "extension") else event.extension[field]) == expected


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|msg=a=b", "unescaped '='"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|msg=a b=c", "'b' is not a dictionary key"),
        ("CEF:0|Veto|Veto Cloud|1|deny|a\\x|8|", "no escape"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|msg=a\\|b", "no escape"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|msg=a\\", "no escape"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x", "5 of its 7"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|11|", "not an integer 0-10"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|High|", "not an integer 0-10"),
        ("CEF:0|Veto|Veto Cloud|1|deny||8|", "empty name"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|msg=a\nb", "raw line break"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|msg=a msg=b", "twice"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|cs1=a", "come together"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8| msg=a", "expected 'key='"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|act=" + "a" * 64, "longer than 63"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|rt=yesterday", "not a time"),
        ("CEF:0|Veto|Veto Cloud|1|deny|x|8|cn1=7.5 cn1Label=v", "not an integer"),
        ("LEEF:0|Veto|Veto Cloud|1|deny|x|8|", "does not start"),
    ],
)
def test_cef_parser__line_breaking_a_rule__refused(line: str, why: str) -> None:
    with pytest.raises(CEFError, match=re.escape(why)):
        parse(line)


# Then the format.


def test_cef__deny__the_documented_line() -> None:
    # Given a high-severity deny
    # Then the line is exactly the documented header and keys (pinned: SIEM parsers are
    # configured against it)
    assert _line(message("deny")) == (
        f"CEF:0|Veto|Veto Cloud|{cef.DEVICE_VERSION}|deny|Tool call denied|8|"
        "rt=1796299205250 cat=decision act=deny suser=deploy-bot msg=deny on the payments team "
        "reason=Command deletes files recursively requestClientApplication=deploy-bot "
        "request=https://veto.example.com/dashboard/teams/payments/decisions/4f6c1a2e/ "
        f"externalId={WEBHOOK_ID} cs1=shell.exec cs1Label=Tool cs2=Block rm -rf cs2Label=Rule "
        "cs3=payments cs3Label=Team cs5=4f6c1a2e-0d51-4c84-9d0e-5b3f2a1c9e77 cs5Label=Decision ID "
        "cs6=production cs6Label=Environment flexString1=no-rm-rf flexString1Label=Rule ID "
        "flexString2=gpt-5 flexString2Label=Model"
    )


@pytest.mark.parametrize(
    ("event", "act", "suser", "cat"),
    [
        ("deny", "deny", "deploy-bot", "decision"),
        ("require_approval", "require_approval", "deploy-bot", "decision"),
        ("budget_exceeded", "deny", "deploy-bot", "decision"),
        ("approval.resolved", "approved", "alice", "approval"),
        ("approval.expired", "expired", None, "approval"),
        ("policy.published", "publish", "bob", "policy"),
        ("webhook.failed", "disable", None, "webhook"),
    ],
)
def test_cef__each_event__parses_with_its_action_and_actor(
    event: str, act: str, suser: str | None, cat: str
) -> None:
    # Given a message of each event
    parsed = parse(_line(message(event)))
    # Then the strict parser reads it, with the event as signature, and who did what
    assert (parsed.version, parsed.vendor, parsed.product) == (0, "Veto", "Veto Cloud")
    assert parsed.signature_id == event and parsed.name == cef.NAMES[event]
    assert parsed.extension["act"] == act
    assert parsed.extension.get("suser") == suser
    assert parsed.extension["cat"] == cat
    assert parsed.extension["rt"] == str(int(AT.timestamp() * 1000))
    assert parsed.extension["externalId"] == WEBHOOK_ID


@pytest.mark.parametrize(
    ("severity", "expected"), [("info", 1), ("low", 3), ("medium", 5), ("high", 8), ("critical", 10)]
)
def test_cef__severity__mapped_onto_0_to_10(severity: str, expected: int) -> None:
    assert parse(_line(message("deny", severity=severity))).severity == expected


def test_cef__values_with_every_special_character__read_back_unchanged() -> None:
    # Given a tool, rule and reason holding what CEF escapes, and what it must not
    tool = "a|b\\c=d"
    reason = "line one\nline two\r\nkey=value \\n literal | pipe"
    msg = message("deny", decision=decision(tool_name=tool, rule_name="x = y", reason=reason))
    # When the line is parsed
    parsed = parse(_line(msg)).extension
    # Then each is read back as written
    assert (parsed["cs1"], parsed["cs2"], parsed["reason"]) == (tool, "x = y", reason)


def test_cef__unknown_event_with_pipes__header_escaped() -> None:
    # Given an event name holding a pipe and a backslash (nothing sends one today)
    parsed = parse(_line(message("x|y\\z")))
    # Then the header still has its seven fields and reads back the name
    assert parsed.signature_id == parsed.name == "x|y\\z"


def test_cef__control_characters__replaced_and_spaces_trimmed() -> None:
    # Given a reason with a NUL, an escape character and spaces around it
    msg = message("deny", decision=decision(reason="  a\x00b\x1bc\td  "))
    # Then the control characters become U+FFFD (tab stays), the spaces around are gone
    assert parse(_line(msg)).extension["reason"] == "a\ufffdb\ufffdc\td"


def test_cef__long_values__clipped_to_the_dictionary_lengths() -> None:
    # Given a summary and a tool longer than CEF keeps
    msg = message("deny", summary="s" * 5000, decision=decision(tool_name="t" * 5000))
    parsed = parse(_line(msg)).extension
    # Then each is cut to its key's length with an ellipsis
    assert len(parsed["msg"]) == 1023 and parsed["msg"].endswith("…")
    assert len(parsed["cs1"]) == 4000 and parsed["cs1"].endswith("…")


def test_cef__test_send__marked() -> None:
    parsed = parse(_line(message("deny", test=True)))
    assert parsed.name == "[Test] Tool call denied" and parsed.extension["cat"] == "test"


def _expected(original: str, limit: int) -> tuple[str, bool]:
    """The documented normalization: control characters to U+FFFD, spaces around trimmed."""
    cleaned = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "\ufffd", original).strip(" ")
    return cleaned, len(cleaned.encode("utf-16-le")) // 2 > limit


@settings(max_examples=400, deadline=None)
@given(msg=messages())
def test_cef__any_message__strict_parser_reads_back_every_value(msg: WebhookMessage) -> None:
    # Given any message with |, \, =, newlines, astral characters and long runs in its fields
    line = _line(msg)
    # When the strict parser reads its line
    parsed = parse(line)
    # Then each value is the field as written (normalized), or its start and an ellipsis
    checks = [("msg", msg.summary, 1023), ("cs3", msg.team_slug, 4000)]
    if msg.decision:
        checks += [
            ("cs1", msg.decision.tool_name or (msg.approval.tool_name if msg.approval else ""), 4000),
            ("reason", msg.decision.reason, 1023),
            ("cs5", msg.decision.decision_id, 4000),
            ("cs6", msg.decision.environment, 4000),
            ("flexString2", msg.decision.model, 1023),
        ]
    if msg.approval:
        checks += [("cs4", msg.approval.approval_id, 4000)]
    for key, original, limit in checks:
        cleaned, clipped = _expected(original, limit)
        if not cleaned:
            assert key not in parsed.extension
        elif clipped:
            value = parsed.extension[key]
            assert value.endswith("…") and cleaned.startswith(value[:-1])
        else:
            assert parsed.extension[key] == cleaned, key
    assert parsed.severity == cef.SEVERITY[msg.severity]


@pytest.mark.parametrize("event", EVENTS)
def test_cef__each_event__one_line(event: str) -> None:
    assert "\n" not in _line(message(event, summary="two\nlines"))


def test_cef__policy_published__version_and_link() -> None:
    msg = message("policy.published")
    parsed = parse(_line(msg)).extension
    assert (parsed["cn1"], parsed["cn1Label"], parsed["request"]) == (
        "7",
        "Policy Version",
        msg.links["policy"],
    )


def test_cef__policy_rollback__named_so() -> None:
    msg = message("policy.published", policy=PolicyFacts(version=3, published_by="bob", kind="rollback"))
    parsed = parse(_line(msg))
    assert (parsed.name, parsed.extension["act"], parsed.extension["cn1"]) == (
        "Policy rolled back",
        "rollback",
        "3",
    )
