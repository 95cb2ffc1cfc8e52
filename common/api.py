"""Small helpers shared by the API layers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
