"""The one place settings read the process environment.

Every reader validates its value and raises ``ImproperlyConfigured`` naming the
variable, so a malformed value fails loudly at start instead of surfacing as a
strange error under load.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from common.logs import LOG_FORMATS

N = TypeVar("N", int, float)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def _env_number(
    name: str, default: N, parse: Callable[[str], N], kind: str, minimum: N | None, maximum: N | None
) -> N:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum {maximum}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    return _env_number(name, default, int, "an integer", minimum, maximum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum, None)


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return value


def log_format() -> str:
    """``VETO_LOG_FORMAT``: the settings' LOGGING and uvicorn's (veto_cloud/serve.py) read it here."""
    return env_choice("VETO_LOG_FORMAT", "text", LOG_FORMATS)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def public_key_hex_checked(name: str, value: str) -> str:
    """``value`` if it is a raw Ed25519 public key in hex (64 hex digits), lower-cased."""
    try:
        valid = len(bytes.fromhex(value)) == 32
    except ValueError:
        valid = False
    if not valid:
        raise ImproperlyConfigured(f"{name}: {value!r} is not an Ed25519 public key in hex (64 hex digits)")
    return value.lower()


def database_config(url: str, *, base_dir: Path) -> dj_database_url.DBConfig:
    """Django DATABASES['default'] from a URL; tuned per engine for this workload."""
    try:
        config = dj_database_url.parse(url)
    except Exception as exc:  # dj_database_url raises several types for junk input
        raise ImproperlyConfigured(f"DATABASE_URL={url!r} is not a database URL: {exc}") from exc
    engine = config.get("ENGINE", "")
    if engine == "django.db.backends.sqlite3":
        name = Path(config["NAME"])
        if not name.is_absolute():
            name = base_dir / name
        name.parent.mkdir(parents=True, exist_ok=True)
        config["NAME"] = str(name)
        config["OPTIONS"] = {
            # WAL lets the dashboard read while the decision writer commits; IMMEDIATE takes the
            # write lock at BEGIN so two writers queue on busy_timeout instead of failing with
            # "database is locked" half-way through a transaction.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
            "transaction_mode": "IMMEDIATE",
        }
        config["TEST"] = {"NAME": str(name.with_name(name.stem + "-test" + name.suffix))}
    elif engine in ("django.db.backends.postgresql",):
        # psycopg 3's pool: ASGI runs views on short-lived threads, so per-thread persistent
        # connections would be reopened constantly; the pool keeps a bounded set warm.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            # libpq's own bound on opening a connection (whole seconds, at least 2): an unreachable
            # host must not hold the pool's (or the decision writer's) connect for minutes.
            "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 2, minimum=2),
            # A peer that vanished (a partition, a dead host) with a connection open: without these
            # a socket waits on it for the kernel's ~15 minutes. Keepalives probe an idle connection
            # (dead after 5 + 3 x 2 s); tcp_user_timeout drops one whose sent data goes unacknowledged
            # this long. Neither fires on a merely slow query (the server's kernel still answers),
            # so migrations and exports are unaffected. A request never waits for these: its own
            # deadline (DATABASE_REQUEST_TIMEOUT) answers 503 first; they free the connection.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": int(env_float("DATABASE_TCP_USER_TIMEOUT", 10.0, minimum=1.0) * 1000),
            "pool": {
                "min_size": env_int("DATABASE_POOL_MIN", 2, minimum=0),
                "max_size": env_int("DATABASE_POOL_MAX", 16, minimum=1),
                # How long a request waits for a pooled connection before it answers 503
                # database_unavailable. Every answer during an outage must come within a second,
                # and a healthy pool hands one out in milliseconds.
                "timeout": env_float("DATABASE_POOL_TIMEOUT", 0.5, minimum=0.05),
                # How long the pool retries (with backoff 1, 2, 4 s...) a connection it lost before
                # giving up; the next request then starts afresh. Short, so that once the database
                # is back service resumes within seconds rather than after a long backoff step.
                "reconnect_timeout": env_float("DATABASE_POOL_RECONNECT_TIMEOUT", 3.0, minimum=0.5),
            },
        }
    else:
        raise ImproperlyConfigured(
            f"DATABASE_URL engine {engine!r} is not supported (use sqlite or postgres)"
        )
    return config


def redis_database_number(url: str) -> int:
    """The database number of a ``redis://`` URL (its path, or ``?db=``; 0 when it names none)."""
    if not url:
        return 0
    parts = urlsplit(url)
    named = parts.path.strip("/") or dict(parse_qsl(parts.query)).get("db", "")
    return int(named) if named.isdigit() else 0
