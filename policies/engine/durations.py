"""Durations as rule authors write them: ``24h``, ``2h``, ``30s``, ``1h30m``, ``2d`` or plain seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)\s*([smhd])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhd]\s*)+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 90 * 86400


def parse_duration(value: object) -> int:
    """Seconds in ``value``; raises ValueError with a message fit for a rule author."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 30s, 15m, 2h, 1d or a number of seconds")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value)
    elif isinstance(value, str) and _WHOLE.match(value.lower()):
        seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value.lower()))
    else:
        raise ValueError(f"{value!r} is not a duration (use 30s, 15m, 2h, 1d or a number of seconds)")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_SECONDS:
        raise ValueError("a duration may be at most 90 days")
    return seconds
