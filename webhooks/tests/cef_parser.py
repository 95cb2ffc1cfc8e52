"""A strict CEF parser, written from "Implementing ArcSight CEF" for the tests (never used by
the application): it refuses what a lenient SIEM would guess at, so a line it accepts is read
the same way by every receiver.

The rules it enforces:
- ``CEF:<version>|`` then six more header fields, separated by unescaped pipes (seven in all
  before the extension); in the header only ``\\\\`` and ``\\|`` are escapes, any other
  backslash is an error; no field is empty; severity is an integer 0-10 (we never send the
  spec's words Low/Medium/High/Very-High, so they are refused too).
- The extension is ``key=value`` pairs separated by single spaces. A key is letters, digits
  and underscores. A value runs until a space followed by the next ``key=``; in it ``\\\\``,
  ``\\=``, ``\\n`` and ``\\r`` are the escapes, any other backslash is an error, and an
  unescaped ``=`` is an error (that is how a value that forgot to escape one is caught).
  Pipes need no escape there, and ``\\|`` is refused.
- Each key is one of the dictionary's, at most once, within the dictionary's length (in
  UTF-16 units, as ArcSight's Java counts); a custom field comes with its label and a label
  with its field; ``rt`` is milliseconds since the epoch (or ``MMM dd yyyy HH:mm:ss``) and
  ``cn1`` an integer.
- The line holds no raw CR or LF (multi-line values are escaped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The extension dictionary's keys we may meet, with their lengths (None: not a string).
DICTIONARY: dict[str, int | None] = {
    "act": 63,
    "app": 31,
    "cat": 1023,
    "cnt": None,
    "destinationServiceName": 1023,
    "deviceExternalId": 255,
    "dhost": 1023,
    "dst": None,
    "duser": 1023,
    "dvchost": 100,
    "end": None,
    "externalId": 40,
    "msg": 1023,
    "outcome": 63,
    "reason": 1023,
    "request": 1023,
    "requestClientApplication": 1023,
    "rt": None,
    "shost": 1023,
    "src": None,
    "start": None,
    "suser": 1023,
    **{f"cs{n}": 4000 for n in range(1, 7)},
    **{f"cs{n}Label": 1023 for n in range(1, 7)},
    **{f"cn{n}": None for n in range(1, 4)},
    **{f"cn{n}Label": 1023 for n in range(1, 4)},
    "flexString1": 1023,
    "flexString2": 1023,
    "flexString1Label": 128,
    "flexString2Label": 128,
}
LABELLED = [*(f"cs{n}" for n in range(1, 7)), *(f"cn{n}" for n in range(1, 4)), "flexString1", "flexString2"]
_KEY = re.compile(r"[A-Za-z0-9_]+=")
_HEADER_ESCAPES = {"\\": "\\", "|": "|"}
_VALUE_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
_RT = re.compile(r"\d+|[A-Z][a-z]{2} \d\d \d{4} \d\d:\d\d:\d\d")


class CEFError(ValueError):
    pass


@dataclass(frozen=True)
class CEFEvent:
    version: int
    vendor: str
    product: str
    device_version: str
    signature_id: str
    name: str
    severity: int
    extension: dict[str, str] = field(default_factory=dict)


def parse(line: str) -> CEFEvent:
    if "\n" in line or "\r" in line:
        raise CEFError("a raw line break in the line")
    if not line.startswith("CEF:"):
        raise CEFError("the line does not start with 'CEF:'")
    fields, rest = _header(line[4:])
    version, vendor, product, device_version, signature_id, name, severity = fields
    if not version.isdigit():
        raise CEFError(f"version {version!r} is not an integer")
    for label, value in zip(
        ("vendor", "product", "device version", "signature id", "name"),
        (vendor, product, device_version, signature_id, name),
        strict=True,
    ):
        if not value:
            raise CEFError(f"empty {label}")
    if not re.fullmatch(r"\d|10", severity):
        raise CEFError(f"severity {severity!r} is not an integer 0-10")
    return CEFEvent(
        version=int(version),
        vendor=vendor,
        product=product,
        device_version=device_version,
        signature_id=signature_id,
        name=name,
        severity=int(severity),
        extension=_extension(rest),
    )


def _header(text: str) -> tuple[list[str], str]:
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < 7:
        if i >= len(text):
            raise CEFError(f"the header has {len(fields)} of its 7 pipe-separated fields")
        ch = text[i]
        if ch == "\\":
            escaped = text[i + 1 : i + 2]
            if escaped not in _HEADER_ESCAPES:
                raise CEFError(f"header: backslash before {escaped!r} at {i} is no escape")
            current.append(_HEADER_ESCAPES[escaped])
            i += 2
        elif ch == "|":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    return fields, text[i:]


def _extension(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    i = 0
    while i < len(text):
        key_match = _KEY.match(text, i)
        if not key_match:
            raise CEFError(f"extension: expected 'key=' at {i}: {text[i : i + 20]!r}")
        key = key_match.group()[:-1]
        i = key_match.end()
        value: list[str] = []
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                escaped = text[i + 1 : i + 2]
                if escaped not in _VALUE_ESCAPES:
                    raise CEFError(f"extension {key}: backslash before {escaped!r} is no escape")
                value.append(_VALUE_ESCAPES[escaped])
                i += 2
            elif ch == "=":
                raise CEFError(f"extension {key}: unescaped '=' at {i}")
            elif ch == " " and _KEY.match(text, i + 1):
                i += 1
                break
            else:
                value.append(ch)
                i += 1
        _add(pairs, key, "".join(value))
    _check_labels(pairs)
    return pairs


def _add(pairs: dict[str, str], key: str, value: str) -> None:
    if key not in DICTIONARY:
        raise CEFError(f"extension: {key!r} is not a dictionary key")
    if key in pairs:
        raise CEFError(f"extension: {key!r} twice")
    limit = DICTIONARY[key]
    if limit is not None and len(value.encode("utf-16-le")) // 2 > limit:
        raise CEFError(f"extension {key}: longer than {limit}")
    if key == "rt" and not _RT.fullmatch(value):
        raise CEFError(f"extension rt: {value!r} is not a time")
    if key.startswith("cn") and not key.endswith("Label") and not re.fullmatch(r"-?\d+", value):
        raise CEFError(f"extension {key}: {value!r} is not an integer")
    pairs[key] = value


def _check_labels(pairs: dict[str, str]) -> None:
    for key in LABELLED:
        if (key in pairs) != (f"{key}Label" in pairs):
            raise CEFError(f"extension: {key} and {key}Label come together")
