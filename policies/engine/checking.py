"""A document's whole check (load, compile, fixtures) as one call, for a worker process: pure,
so a spawned worker imports only the engine."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from datetime import datetime
from typing import Any

from policies.engine.document import load_rule_set
from policies.engine.evaluator import compile_rule_set
from policies.engine.fixtures import FixtureResult, run_fixtures
from policies.engine.source import Limits


def worker_initializer() -> None:
    """A worker's initializer. Ctrl-C stops the server, which stops its workers, so a worker
    does not print a KeyboardInterrupt of its own. And a worker ends when its server does,
    however that ends: a server killed outright (SIGKILL, OOM) never tells its pool to stop,
    and a spawned worker holds its own end of the call queue, so it would wait on it forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True, name="parent-watch").start()


def _exit_with(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def load_source(text: str, content_type: str, limits: Limits) -> dict[str, Any]:
    return load_rule_set(text, content_type=content_type, limits=limits)


def check_source(text: str, limits: Limits, now: datetime) -> tuple[dict[str, Any], list[FixtureResult]]:
    document = load_rule_set(text, content_type="application/yaml", limits=limits)
    return document, run_fixtures(compile_rule_set(document), document.get("fixtures", []), now=now)
