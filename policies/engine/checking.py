"""A document's whole check (load, compile, fixtures) as one call, for a worker process: pure,
so a spawned worker imports only the engine."""

from __future__ import annotations

import signal
from datetime import datetime
from typing import Any

from policies.engine.document import load_rule_set
from policies.engine.evaluator import compile_rule_set
from policies.engine.fixtures import FixtureResult, run_fixtures
from policies.engine.source import Limits


def ignore_interrupts() -> None:
    """A worker's initializer: Ctrl-C stops the server, which stops its workers; a worker does
    not print a KeyboardInterrupt of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def load_source(text: str, content_type: str, limits: Limits) -> dict[str, Any]:
    return load_rule_set(text, content_type=content_type, limits=limits)


def check_source(text: str, limits: Limits, now: datetime) -> tuple[dict[str, Any], list[FixtureResult]]:
    document = load_rule_set(text, content_type="application/yaml", limits=limits)
    return document, run_fixtures(compile_rule_set(document), document.get("fixtures", []), now=now)
