"""Start the ASGI web server the way the benchmarks chose (see README, "Performance").

``python -m veto_cloud.serve`` is what `make run`, the Dockerfile and docker-compose run.
Without REDIS_URL the channel layer lives in process memory, so there must be exactly
one web process; with Redis the default is one worker per CPU core.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from common.logs import logging_config
from veto_cloud.env import env_bool, env_float, env_int, env_str, log_format

# Our HTTP/1.1 protocol: uvicorn's httptools one plus header and body read timeouts and a
# graceful close (veto_cloud/http_protocol.py documents VETO_HTTP_*_TIMEOUT_SECONDS).
HTTP_PROTOCOL = "veto_cloud.http_protocol:VetoHttpProtocol"


def keep_alive_seconds() -> float:
    return env_float("VETO_HTTP_KEEPALIVE_TIMEOUT_SECONDS", 5.0, minimum=1.0)


def ws_per_message_deflate() -> bool:
    """Compress websocket messages (RFC 7692)? Off unless VETO_WS_PER_MESSAGE_DEFLATE=1.

    Off by default: the live path sends the same small HTML fragment (a batch's rows, 1-10 KB)
    to every page of a team, and deflate compresses it again for each socket, with a
    compression context per socket kept for the connection's life. Measured with
    benchmarks/dashboard_fanout.py (200 pages, 100 decisions/s, README "Performance"), that
    was a tenth of the server's CPU and most of the p95 above the goal; on the links a
    dashboard is used over the bytes saved do not buy it back. Turn it on behind a slow link."""
    return env_bool("VETO_WS_PER_MESSAGE_DEFLATE", False)


def json_log_config() -> list[str]:
    """With VETO_LOG_FORMAT=json, ``--log-config`` naming a file of the settings' own logging
    configuration (common/logs.py), written into the var dir: uvicorn's lines, its parent
    process's included, are JSON lines like the rest. Nothing with text: uvicorn's own format."""
    if log_format() != "json":
        return []
    var_dir = Path(env_str("VETO_VAR_DIR") or Path(__file__).resolve().parents[1] / "var")
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / "uvicorn-log-config.json"
    config = logging_config(log_format="json", level=env_str("LOG_LEVEL", "INFO") or "INFO")
    # Whole or not at all: a second server starting from the same var dir reads one or the other.
    staged = path.with_name(f"{path.name}.{os.getpid()}.new")
    staged.write_text(json.dumps(config))
    os.replace(staged, path)
    return ["--log-config", str(path)]


def prune_metrics_files() -> None:
    """Before the workers start: remove the metrics files of processes that are gone, so /metrics'
    counters start again (a restart is a counter reset to Prometheus) from what the processes still
    running hold (a Celery worker's counts stay). The directory is the settings' METRICS_DIR, read
    as the workers will read it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.local")
    from django.conf import settings

    from common.metrics_files import prune_dead_processes

    prune_dead_processes(Path(settings.METRICS_DIR), counters_too=True)


def uvicorn_options(
    *,
    host: str,
    port: int,
    workers: int,
    keep_alive: float | None = None,
    per_message_deflate: bool | None = None,
) -> list[str]:
    """uvicorn's command-line options, here and for the tests' live server (conftest.py)."""
    if keep_alive is None:
        keep_alive = keep_alive_seconds()
    if per_message_deflate is None:
        per_message_deflate = ws_per_message_deflate()
    return [
        *json_log_config(),
        "veto_cloud.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--http",
        HTTP_PROTOCOL,
        # Idle time allowed between requests on a kept-alive connection (whole seconds).
        "--timeout-keep-alive",
        str(max(1, round(keep_alive))),
        "--ws-per-message-deflate",
        "true" if per_message_deflate else "false",
        "--no-access-log",
        "--lifespan",
        "off",
        "--proxy-headers",
    ]


def main() -> None:
    host = env_str("HOST", "127.0.0.1") or "127.0.0.1"
    port = env_int("PORT", 8000, minimum=1, maximum=65535)
    default_workers = (os.cpu_count() or 1) if env_str("REDIS_URL") else 1
    workers = env_int("WEB_CONCURRENCY", default_workers, minimum=1)
    if workers > 1 and not env_str("REDIS_URL"):
        sys.exit("WEB_CONCURRENCY > 1 needs REDIS_URL: the in-memory channel layer cannot span processes")
    prune_metrics_files()
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "uvicorn", *uvicorn_options(host=host, port=port, workers=workers)],
    )


if __name__ == "__main__":
    main()
