"""Events to deliveries (being written)."""

from __future__ import annotations


def dispatch_team_clearing(team_id: str) -> None:
    """Dispatch one team (filled in by the next commit)."""


def sweep() -> None:
    """The beat sweep (filled in by the next commit)."""
