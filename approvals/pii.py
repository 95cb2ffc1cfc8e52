"""What in a tool call's arguments looks like personal data or a secret, for the approval page.

Pure Python, no Django. The value patterns are the SDK's own (``veto.rules.patterns``, the
reference patterns its output rules offer for redaction), copied here because the server does not
depend on the SDK at run time; a test pins them to the installed SDK's. They run on RE2, so their
cost is linear in the text, and only the first ``MAX_SCAN_CHARS`` of a value are scanned.

A flag is a hint for the person deciding, not a guarantee: a value that matches nothing can still
be personal, which is why field names are looked at too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import re2

# veto==0.15.2, veto/rules/patterns.py: OUTPUT_PATTERNS (order kept).
SDK_OUTPUT_PATTERNS: dict[str, str] = {
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "credit_card": r"\b(?:\d[ -]*?){13,16}\b",
    "openai_api_key": r"\bsk-(?:proj-)?[A-Za-z0-9]{20,}\b",
    "github_api_key": r"(?:\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{82}\b)",
    "aws_api_key": r"\b(?:A3T|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}\b",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    "us_phone": r"\b(?:\+1[-.\s]?)?(?:\(?\d{3}\)?[-.\s]?)\d{3}[-.\s]?\d{4}\b",
}

# What the page says for each kind.
LABELS: dict[str, str] = {
    "ssn": "SSN",
    "credit_card": "card number",
    "openai_api_key": "API key",
    "github_api_key": "API key",
    "aws_api_key": "API key",
    "email": "e-mail address",
    "us_phone": "phone number",
    "secret": "secret",
}

MAX_SCAN_CHARS = 100_000
# Card-shaped matches checked per value: enough for any real argument, bounded for hostile ones.
MAX_CARD_CANDIDATES = 50


def _compile(pattern: str) -> re2._Regexp:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


_PATTERNS = {kind: _compile(pattern) for kind, pattern in SDK_OUTPUT_PATTERNS.items()}


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _has_card_number(text: str) -> bool:
    # The SDK's card pattern matches any run of 13-16 digits (order numbers, millisecond
    # timestamps); a card number also passes the Luhn check, which cuts most of those out.
    for index, match in enumerate(_PATTERNS["credit_card"].finditer(text)):
        if index >= MAX_CARD_CANDIDATES:
            return False
        digits = "".join(c for c in match.group() if c.isdigit())
        if 13 <= len(digits) <= 16 and _luhn_valid(digits):
            return True
    return False


def _finds(pattern: re2._Regexp) -> Callable[[str], bool]:
    return lambda text: pattern.search(text) is not None


_CHECKS: dict[str, Callable[[str], bool]] = {
    kind: _has_card_number if kind == "credit_card" else _finds(pattern)
    for kind, pattern in _PATTERNS.items()
}


def _labels(kinds: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(LABELS[kind] for kind in kinds))


def value_flags(text: str) -> tuple[str, ...]:
    """Labels of the kinds of personal data or secrets found in ``text`` (e.g. ``("e-mail address",)``)."""
    if not text:
        return ()
    sample = text[:MAX_SCAN_CHARS]
    return _labels(kind for kind, check in _CHECKS.items() if check(sample))


# Field names, split into lower-case words ("customerEmail" -> customer, email), that say what
# the value is even when the value itself gives nothing away.
_NAME_WORDS: dict[str, str] = {
    "email": "email",
    "mail": "email",
    "phone": "us_phone",
    "mobile": "us_phone",
    "msisdn": "us_phone",
    "ssn": "ssn",
    "password": "secret",
    "passwd": "secret",
    "secret": "secret",
    "token": "secret",
}
_NAME_PAIRS: dict[tuple[str, str], str] = {
    ("credit", "card"): "credit_card",
    ("card", "number"): "credit_card",
    ("api", "key"): "secret",
    ("social", "security"): "ssn",
}
_WORD_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
MAX_NAME_CHARS = 200


def name_flags(name: str) -> tuple[str, ...]:
    """Labels suggested by a field's name (``customer_email`` -> ``("e-mail address",)``)."""
    words = [word.lower() for word in _WORD_RE.findall(name[:MAX_NAME_CHARS])]
    kinds = [_NAME_WORDS[word] for word in words if word in _NAME_WORDS]
    kinds += [_NAME_PAIRS[pair] for pair in zip(words, words[1:], strict=False) if pair in _NAME_PAIRS]
    return _labels(kinds)
