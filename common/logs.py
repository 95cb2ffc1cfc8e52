"""The log format of every process (web, Celery worker and beat, management commands):
``VETO_LOG_FORMAT=text`` (the default) or ``json``.

JSON is one object per line, made by python-json-logger: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message``; ``request_id`` while a request, or a task it enqueued, is handled
(common/request_id.py); ``exception`` with the traceback's text; ``task_id`` and ``task_name`` in
a worker's task (veto_cloud/celery.py); and any ``extra=`` fields a caller passed. Django's
settings build ``LOGGING`` here, uvicorn's command line gets the same through a file
(veto_cloud/serve.py), and Celery's own handlers get ``json_formatter`` once it has set them up.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_JSON_FIELDS = "%(levelname)s %(name)s %(message)s"
_RENAMED = {"levelname": "level", "name": "logger", "exc_info": "exception"}
# uvicorn's coloured copy of its message, a duplicate; Django's request object, an object's repr.
_NOT_LOGGED = [*RESERVED_ATTRS, "color_message", "request"]


def json_formatter() -> logging.Formatter:
    return JsonFormatter(_JSON_FIELDS, rename_fields=_RENAMED, reserved_attrs=_NOT_LOGGED, timestamp="time")


def configure(config: dict[str, Any]) -> None:
    """Django's ``LOGGING_CONFIG``: ``dictConfig``, and with JSON, Python's warnings (a missing
    static directory, a deprecation) as log records too, so standard error holds only JSON lines."""
    logging.config.dictConfig(config)
    logging.captureWarnings("json" in config.get("formatters", {}))


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``log_format``: the root logger to standard error at
    ``level``. The text format is the one the project always had, unchanged."""
    if log_format == "json":
        formatter: dict[str, Any] = {"()": "common.logs.json_formatter"}
        handler: dict[str, Any] = {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
        formatters = {"json": formatter}
        filters: dict[str, Any] = {"request_id": {"()": "common.request_id.RequestIdFilter"}}
    else:
        handler = {"class": "logging.StreamHandler", "formatter": "plain"}
        formatters = {"plain": {"format": TEXT_FORMAT}}
        filters = {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "filters": filters,
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "INFO"}},
    }
