"""Personal data and secrets in arguments: the SDK's own patterns, field names; no database."""

from __future__ import annotations

import time

import pytest
from veto.rules.patterns import OUTPUT_PATTERNS

from approvals.pii import LABELS, MAX_SCAN_CHARS, SDK_OUTPUT_PATTERNS, name_flags, value_flags


def test_patterns__are_the_installed_sdks_own():
    # The copy must follow the SDK: if the pinned SDK changes its patterns, this fails.
    assert SDK_OUTPUT_PATTERNS == OUTPUT_PATTERNS
    assert set(SDK_OUTPUT_PATTERNS) <= set(LABELS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to dana.s+test@example.co.uk please", ("e-mail address",)),
        ("call (555) 010-1234", ("phone number",)),
        ("+1 555.010.1234", ("phone number",)),
        ("SSN 078-05-1120", ("SSN",)),
        ("card 4111 1111 1111 1111", ("card number",)),
        ("4111-1111-1111-1111", ("card number",)),
        ("sk-proj-abcdefghijklmnopqrstuvwx", ("API key",)),
        ("ghp_" + "a" * 36, ("API key",)),
        ("AKIAIOSFODNN7EXAMPLE", ("API key",)),
        ("alice@example.com, 078-05-1120", ("SSN", "e-mail address")),
    ],
)
def test_value_flags__finds_each_kind(text, expected):
    assert value_flags(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "internal-reports",
        "alice at example dot com",
        "1700000000000",  # a millisecond timestamp: card-shaped, fails the Luhn check
        "order 4111 1111 1111 1112",  # one digit off a real card number
        "sk-short",
        "version 1.2.3",
    ],
)
def test_value_flags__ordinary_text__nothing(text):
    assert value_flags(text) == ()


def test_value_flags__huge_hostile_input__bounded_and_fast():
    # Digits and separators the card pattern could chew on, far past the scan limit, then an e-mail
    text = "1 " * MAX_SCAN_CHARS + "x@example.com"

    started = time.perf_counter()
    flags = value_flags(text)
    elapsed = time.perf_counter() - started

    assert "e-mail address" not in flags  # beyond the scanned prefix
    assert elapsed < 1.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("email", ("e-mail address",)),
        ("customerEmail", ("e-mail address",)),
        ("phone_number", ("phone number",)),
        ("MobilePhone", ("phone number",)),
        ("ssn", ("SSN",)),
        ("social_security_no", ("SSN",)),
        ("creditCard", ("card number",)),
        ("card_number", ("card number",)),
        ("APIKey", ("secret",)),
        ("api_key", ("secret",)),
        ("db_password", ("secret",)),
        ("session", ()),
        ("bucket", ()),
        ("company", ()),
        ("", ()),
    ],
)
def test_name_flags__names_that_say_what_the_value_is(name, expected):
    assert name_flags(name) == expected
