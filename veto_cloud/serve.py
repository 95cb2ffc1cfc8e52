"""Start the ASGI web server the way the benchmarks chose (see README, "Performance").

``python -m veto_cloud.serve`` is what `make run`, the Dockerfile and docker-compose run.
Without REDIS_URL the channel layer lives in process memory, so there must be exactly
one web process; with Redis the default is one worker per CPU core.
"""

from __future__ import annotations

import os
import sys

from veto_cloud.env import env_int, env_str


def main() -> None:
    host = env_str("HOST", "127.0.0.1") or "127.0.0.1"
    port = env_int("PORT", 8000, minimum=1, maximum=65535)
    default_workers = (os.cpu_count() or 1) if env_str("REDIS_URL") else 1
    workers = env_int("WEB_CONCURRENCY", default_workers, minimum=1)
    if workers > 1 and not env_str("REDIS_URL"):
        sys.exit("WEB_CONCURRENCY > 1 needs REDIS_URL: the in-memory channel layer cannot span processes")
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "veto_cloud.asgi:application",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--lifespan",
            "off",
            "--proxy-headers",
        ],
    )


if __name__ == "__main__":
    main()
