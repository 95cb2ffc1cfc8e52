"""DRF's JSON parser, refusing what the database cannot store as the gateway does (common/edge.py)."""

from __future__ import annotations

from typing import Any

from rest_framework.parsers import JSONParser

from common.edge import json_loads, refuse_nul
from common.errors import InvalidInput


class StorableJSONParser(JSONParser):
    """JSON bodies read as the gateway reads them: the same refusals, in the same words."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        refuse_nul(raw)
        return json_loads(raw)


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
