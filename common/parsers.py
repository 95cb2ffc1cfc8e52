"""DRF's JSON parser, refusing what the database cannot store as the gateway does (common/edge.py)."""

from __future__ import annotations

import io
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from common.edge import refuse_nul
from common.errors import InvalidInput


class StorableJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        refuse_nul(raw)
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            # json.loads recurses per nesting level; a deeply nested body is the caller's error.
            raise ParseError("JSON parse error - the document is nested too deeply") from exc


class RuleSetSourceParser(StorableJSONParser):
    """The request body as text, for rule-set uploads (stored exactly as uploaded). YAML and
    JSON alike: the rule engine parses it, with line numbers for every problem."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        refuse_nul(raw, text=True)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the rule set is not UTF-8 text: {exc}") from exc
