"""Loading rule-set sources in a separate process, so one upload's CPU never holds the GIL that
the web process's other requests (validate, /healthz) need.

Measured on the live server (benchmarks/rule_set_upload_latency.py): back-to-back uploads at
the limits, parsed in the web process, took validate from p99 36 ms to 236 ms (max 409 ms);
parsed here, see the README figures. One worker per web process by default
(``RULE_SET_PARSE_WORKERS``; 0 parses in the request's thread, as the tests do), started with
``spawn`` (no fork of a threaded server), at most ``RULE_SET_PARSE_QUEUE`` documents waiting:
past that an upload is a 503 ``rule_set_parser_busy`` with Retry-After, not a growing queue.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings

from common.errors import ServiceUnavailable
from policies.engine import FixtureResult, checking
from policies.engine.source import Limits

logger = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_slots: threading.BoundedSemaphore | None = None


class ParserBusy(ServiceUnavailable):
    code = "rule_set_parser_busy"


def _executor() -> tuple[ProcessPoolExecutor, threading.BoundedSemaphore]:
    global _pool, _slots
    with _lock:
        if _pool is None or _slots is None:
            _pool = ProcessPoolExecutor(
                max_workers=settings.RULE_SET_PARSE_WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=checking.worker_initializer,
            )
            _slots = threading.BoundedSemaphore(
                settings.RULE_SET_PARSE_WORKERS + settings.RULE_SET_PARSE_QUEUE
            )
        return _pool, _slots


def _discard(pool: ProcessPoolExecutor) -> None:
    """Forget the pool and end its workers: a worker that timed out is still running the
    document (a shutdown only stops idle ones), and nothing else would ever end it."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()


def _run(function: Callable[..., T], *args: Any) -> T:
    if settings.RULE_SET_PARSE_WORKERS == 0:
        return function(*args)
    pool, slots = _executor()
    if not slots.acquire(blocking=False):
        raise ParserBusy("too many rule sets are being checked right now; retry shortly", extra={})
    try:
        future = pool.submit(function, *args)
        try:
            return future.result(timeout=settings.RULE_SET_PARSE_TIMEOUT_SECONDS)
        except FutureTimeout as exc:
            # Within the limits a document takes well under a second; a stuck worker is replaced.
            logger.error("rule_set.parse_timeout seconds=%s", settings.RULE_SET_PARSE_TIMEOUT_SECONDS)
            _discard(pool)
            raise ServiceUnavailable("checking the rule set took too long; retry shortly") from exc
        except BrokenProcessPool as exc:
            logger.error("rule_set.parse_worker_died")
            _discard(pool)
            raise ServiceUnavailable("the rule-set checker restarted; retry shortly") from exc
    finally:
        slots.release()


def load_source(text: str, *, content_type: str, limits: Limits) -> dict[str, Any]:
    """``load_rule_set`` in the worker: the normalized document, or its ``RuleSetError``."""
    return _run(checking.load_source, text, content_type, limits)


def check_source(text: str, *, limits: Limits, now: datetime) -> tuple[dict[str, Any], list[FixtureResult]]:
    """The editor's check in the worker: the document and its fixture results."""
    return _run(checking.check_source, text, limits, now)
