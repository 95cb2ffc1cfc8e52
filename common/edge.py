"""The HTTP edge rules the runtime gateway (runtime/gateway.py, runtime/endpoints/) and Django/DRF
(common/parsers.py, common/middleware.py, the API views) share: one implementation each, so both
stacks refuse the same things with the same status, code and words.

- ``?wait=`` long-poll seconds: ``wait_seconds`` (0 to ``MAX_WAIT_SECONDS``).
- Request body size: ``body_limit`` (``VETO_MAX_BODY_BYTES``) and its 413, ``body_too_large``.
- NUL characters, which PostgreSQL text and jsonb cannot store: ``refuse_nul``.
- A body that is not JSON: ``malformed_json`` (400 ``malformed_json``, the parser's reason
  after one prefix), ``json_loads`` for the stack that parses with ``json``, and
  ``refuse_json_constants`` (NaN, Infinity) for the one that parses with pydantic.
- JSON or YAML by media type (``Accept`` for what is served, ``Content-Type`` for what is
  uploaded): ``source_format`` and ``SOURCE_MEDIA_TYPES``.

Scope checks on API keys are tenancy's (tenancy/scopes.py); the mapping of errors to
``{"error": {...}}`` bodies is common/errors.py's ``error_for_exception``, used by both stacks.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from django.conf import settings

from common.errors import InvalidInput, PayloadTooLarge

# The longest a long-poll (``GET /v1/rule-sets/active``, ``GET /v1/approvals/{id}``) may wait.
MAX_WAIT_SECONDS = 60


def wait_seconds(raw: str | None) -> float:
    """The ``?wait=`` of a long-poll: absent or empty is 0 (answer at once; the gateway's query
    parsing drops an empty value, DRF's keeps it as ""); anything else must be a number of
    seconds from 0 to ``MAX_WAIT_SECONDS``, or it is a 400 naming ``wait``."""
    if not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    # NaN compares false, so "nan" (and "inf") fall out here too.
    if not 0.0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidInput(
            f"wait: must be a number of seconds from 0 to {MAX_WAIT_SECONDS}, got {raw[:40]!r}",
            details={"field": "wait", "maximum": MAX_WAIT_SECONDS},
        )
    return seconds


def body_limit() -> int:
    """The largest request body either stack reads (``VETO_MAX_BODY_BYTES``, Django's
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``)."""
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def body_too_large() -> PayloadTooLarge:
    """The 413 for a body over ``body_limit``, naming the limit."""
    return PayloadTooLarge(f"request body is larger than the {body_limit()}-byte limit")


NUL_MESSAGE = "the request contains a NUL character (\\u0000), which cannot be stored"


def has_escaped_nul(body: bytes) -> bool:
    """True when the JSON text has a ``\\u0000`` escape (not an escaped backslash before ``u0000``)."""
    position = body.find(b"\\u0000")
    while position != -1:
        backslashes = 0
        while position - backslashes - 1 >= 0 and body[position - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return True
        position = body.find(b"\\u0000", position + 1)
    return False


def refuse_nul(body: bytes, *, text: bool = False) -> None:
    """400 when the body would put a NUL character in the database: a ``\\u0000`` escape in JSON
    text (an escaped backslash before ``u0000`` is ordinary text), or, for a body kept as text
    (``text=True``: a rule-set source, a form's JSON), a raw NUL byte as well. (A raw NUL in
    JSON read as JSON is already a parse error: JSON forbids control characters in strings.)"""
    if has_escaped_nul(body) or (text and b"\x00" in body):
        raise InvalidInput(NUL_MESSAGE)


def malformed_json(reason: str) -> InvalidInput:
    return InvalidInput(f"request body is not valid JSON: {reason}", code="malformed_json")


def _refuse_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; json.loads reads them unless told not to.
    raise ValueError(f"{name} is not a JSON number")


def json_loads(body: bytes | str) -> Any:
    """``body`` read as JSON, as strictly as the gateway's models read it (no NaN or Infinity);
    ``malformed_json`` naming where it breaks otherwise."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise malformed_json(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except ValueError as exc:  # a constant refused above, or bytes that are not UTF-8/16/32
        raise malformed_json(str(exc)) from exc
    except RecursionError as exc:
        # json.loads recurses per nesting level; a deeply nested body is the caller's error.
        raise malformed_json("the document is nested too deeply") from exc


def refuse_json_constants(body: bytes) -> None:
    """400 ``malformed_json`` for NaN or Infinity standing as a value: not JSON, and PostgreSQL's
    jsonb cannot hold them, but pydantic reads them into ``Any`` fields. Two substring searches
    when neither word is in the body (the common case); a full strict read only when one is."""
    if b"NaN" in body or b"Infinity" in body:
        json_loads(body)


SourceFormat = Literal["yaml", "json"]

# What a rule set (or a policy export) in each format is served as.
SOURCE_MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "yaml": "application/yaml; charset=utf-8",
}

_YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
_JSON_TYPES = frozenset({"application/json", "text/json"})


def _format_of(media_type: str) -> SourceFormat | None:
    if media_type in _YAML_TYPES or media_type.endswith("+yaml"):
        return "yaml"
    if media_type in _JSON_TYPES or media_type.endswith("+json"):
        return "json"
    return None


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


def source_format(header: str | None) -> SourceFormat | None:
    """YAML or JSON, by a media-type header: ``Accept`` (the most preferred of the two; ``q=0``
    refuses one; at equal preference YAML, the format rule sets are written in) or a
    ``Content-Type``. None when it names neither (``*/*``, ``text/plain``, no header): the caller
    keeps its default (the rule set as uploaded; YAML for an upload)."""
    best: SourceFormat | None = None
    best_quality = 0.0
    for media_range in (header or "").split(","):
        media_type, *parameters = media_range.split(";")
        found = _format_of(media_type.strip().lower())
        if found is None:
            continue
        quality = _quality(parameters)
        if quality > best_quality or (quality == best_quality and quality > 0 and found == "yaml"):
            best, best_quality = found, quality
    return best
