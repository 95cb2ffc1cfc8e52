"""Small helpers shared by the API layers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from rest_framework import serializers

from common.errors import NotFound


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a trailing Z, as the SDK's clients parse it."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def parse_uuid_or_404(value: Any, *, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(f"{what} not found") from exc


class JSONObjectField(serializers.JSONField):
    """A JSON value that must be an object (``{}``), with a clear message when it is not."""

    default_error_messages = {"not_object": "Expected a JSON object, got {kind}."}

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object", kind=type(value).__name__ if value is not None else "null")
        return value
