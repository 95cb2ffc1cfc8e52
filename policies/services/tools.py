"""Writes for a team's registered tools (the signatures its agents report)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction

from policies.models import RegisteredTool

logger = logging.getLogger(__name__)


def tools_register(*, team_id: uuid.UUID, tools: list[dict[str, Any]]) -> list[RegisteredTool]:
    """Upsert tool signatures by name (re-registering a tool updates its description and parameters)."""
    registered = []
    with transaction.atomic():
        for tool in tools:
            obj, _ = RegisteredTool.objects.update_or_create(
                team_id=team_id,
                name=tool["name"],
                defaults={
                    "description": tool.get("description") or "",
                    "parameters": tool.get("parameters") or [],
                },
            )
            registered.append(obj)
    logger.info("tools.registered team=%s count=%d", team_id, len(registered))
    return registered
