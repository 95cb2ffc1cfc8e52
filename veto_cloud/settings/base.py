"""Settings shared by every environment; all of it is driven by the environment.

There is deliberately no production-only settings file: production is these
settings with DEBUG off and the environment filled in (production.env.example documents it;
docker-compose.yml fills it in for its containers).
"""

from __future__ import annotations

import re
from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from common.logs import logging_config
from veto_cloud.env import (
    database_config,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    log_format,
    public_key_hex_checked,
    redis_database_number,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VETO_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

# Opt-in only: DEBUG pages list every URL pattern and print tracebacks, the request and settings.
# VETO_DEBUG=1 (or the older DEBUG=true) turns it on; nothing turns it on by default, `make run`
# included. API errors are JSON in every mode (common/middleware.py), DEBUG or not.
DEBUG = env_bool("VETO_DEBUG", env_bool("DEBUG", False))

_DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _DEV_SECRET_KEY

PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS. Off by default (`make run` and the compose file serve plain HTTP on localhost); a
# deployment behind TLS sets VETO_HTTPS=1, which redirects HTTP to HTTPS, marks the session and
# CSRF cookies Secure and sends HSTS (see README, "Production settings").
HTTPS = env_bool("VETO_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("VETO_SSL_REDIRECT", HTTPS)
# Probes call these over plain HTTP from inside the container or the host.
SECURE_REDIRECT_EXEMPT = [r"^readyz$", r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool("VETO_SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("VETO_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("VETO_HSTS_INCLUDE_SUBDOMAINS", True)
# The preload flag only allows a registrable domain's owner to submit it to browsers' lists;
# sending it does not put anyone on them.
SECURE_HSTS_PRELOAD = env_bool("VETO_HSTS_PRELOAD", True)
# Behind a reverse proxy that terminates TLS: the header it sets to "https" (X-Forwarded-Proto,
# usually). Only set it when the proxy always sets or strips that header, or clients could fake it.
_proxy_ssl_header = (env_str("VETO_SECURE_PROXY_SSL_HEADER") or "").strip()
if _proxy_ssl_header:
    if not _proxy_ssl_header.replace("-", "").isalnum():
        raise ImproperlyConfigured(
            f"VETO_SECURE_PROXY_SSL_HEADER={_proxy_ssl_header!r} is not a header name (X-Forwarded-Proto, say)"
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts and styles come from static/ only: no inline <script>, <style>, style="" or on*="".
# The Swagger UI page is the one exception, and only for images (see veto_cloud/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# DEBUG's error pages print settings and request headers: hide anything that may hold a
# credential, database and broker URLs included (Django's default filter shows DATABASE_URL).
DEFAULT_EXCEPTION_REPORTER_FILTER = "common.errors.SecretsHidingReporterFilter"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "csp",
    "common",
    "tenancy",
    "policies",
    "approvals",
    "audit",
    "team_settings",
    "runtime",
    "dashboards",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Outermost of the rest: every error response under an API prefix leaves as JSON, whatever
    # produced it (Django's 404/500 pages, DEBUG's technical pages, a plain-text 400).
    "common.middleware.ApiErrorJsonMiddleware",
    # Async-native static files (WhiteNoise's middleware is sync-only and forced a thread hop
    # for every request); finders in DEBUG, collectstatic's STATIC_ROOT otherwise.
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "common.middleware.ApiBodyLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "veto_cloud.urls"
ASGI_APPLICATION = "veto_cloud.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "approvals.context_processors.pending_approvals",
                "dashboards.context_processors.navigation",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'veto.sqlite3'}"
DATABASES = {"default": database_config(DATABASE_URL, base_dir=BASE_DIR)}
# PostgreSQL: how long a request waits on one database call (a ``run_in_db_thread`` call, the decision
# writer's commit of its row) before it answers 503 database_unavailable (Retry-After) and opens
# the outage breaker (common/database.py). A database that hangs (frozen, partitioned) otherwise
# holds every request for as long as it hangs. Healthy calls take milliseconds.
DATABASE_REQUEST_TIMEOUT = env_float("DATABASE_REQUEST_TIMEOUT", 0.8, minimum=0.05)
# PostgreSQL, server side, on the decision writer's own connection: statement_timeout and
# lock_timeout (seconds). A write the client gave up on does not wait on locks or run for long.
DATABASE_WRITER_STATEMENT_TIMEOUT = env_float("DATABASE_WRITER_STATEMENT_TIMEOUT", 5.0, minimum=0.1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL") or ""
# Redis pub/sub is server-wide: database numbers do not separate it. Installations sharing one
# Redis server on different database numbers (CI beside a developer's `make run`, staging beside
# production) would hear each other's events and dashboard pushes, so every pub/sub channel
# name starts with this: by default the database number, or a name of your own.
REDIS_PUBSUB_PREFIX = env_str("VETO_REDIS_PUBSUB_PREFIX") or f"veto.db{redis_database_number(REDIS_URL)}"
# How long a request waits on Redis (connecting, and for each answer) before it takes its
# "Redis unreachable" path: rate limits and session history per the rule set's fail_mode, the
# key-failure counter in the process, after-commit notifications dropped (common/redis.py). A
# frozen Redis (connections open, nothing answers) costs a request at most about this long.
REDIS_TIMEOUT_SECONDS = env_float("VETO_REDIS_TIMEOUT_SECONDS", 0.5, minimum=0.01)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
            },
        }
    }
    CHANNEL_LAYERS = {
        # redis-py 8 gives every socket a 5 s read timeout, exactly channels-redis's BZPOPMIN block
        # time: an idle receive then raised TimeoutError about half the time. Give reads slack.
        # Sends share these connections, so common/events.py bounds each send by
        # REDIS_TIMEOUT_SECONDS itself (channels-redis has no per-call timeout).
        # Pub/sub, not the list-based RedisChannelLayer: a group message is one PUBLISH that each
        # web process receives once and hands to its own sockets, where the list layer pushes one
        # copy per socket and pops them one round trip each (the live dashboards' fan-out, 200
        # pages per process, measured in benchmarks/dashboard_fanout.py). Lossy like all pub/sub:
        # the live path fills gaps from the database by order number (dashboards/live.py).
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                    }
                ],
                "prefix": f"{REDIS_PUBSUB_PREFIX}.asgi",
            },
        }
    }
else:
    # Room for the overview's day panels (a key per team, panel and quarter-hour: about 475 a
    # team); Django's default of 300 entries culled them and recounted the day on every view.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    # One process only: the embedded default is for `make run` on a laptop.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: Redis when configured; otherwise kombu's filesystem transport, which needs no server
# yet runs a real worker and a real beat (the embedded default of `make run`).
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
# kombu's Redis transport BRPOPs the queues in the worker's order, but by default moves the one it
# just took from to the end (round robin); "priority" keeps webhooks-dispatch first every time.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"queue_order_strategy": "priority"}
if not REDIS_URL:
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
    }
# The webhook dispatch and sweep have their own queue, which every worker consumes first (this
# order, also without -Q; the Procfile and compose name it): a dispatch no longer waits behind the
# hundreds of deliver_many tasks the previous one enqueued (the deliveries benchmark: a whole
# second with no receipt while a 5,000-delivery dispatch sat at the back of the one queue).
CELERY_TASK_QUEUES = (
    Queue("webhooks-dispatch", Exchange("webhooks-dispatch"), routing_key="webhooks-dispatch"),
    Queue("celery", Exchange("celery"), routing_key="celery"),
)
CELERY_TASK_ROUTES = {
    "webhooks.tasks.dispatch_team": {"queue": "webhooks-dispatch"},
    "webhooks.tasks.sweep": {"queue": "webhooks-dispatch"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
# Celery's Django fixup closes the database around every task, and in a prefork worker with
# psycopg's pool that is the whole pool: two new PostgreSQL connections (auth, configuration,
# pool threads) per task, most of a webhook delivery's cost (the deliveries benchmark: 56/s ->
# 112/s). With a reuse count the fixup closes everything only every 2,000 task signals;
# veto_cloud/celery.py instead hands connections back after each task as a request does
# (close_old_connections: returned to the pool, a broken one discarded).
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Persist the schedule after every sent task: cheap, and it lets a health check see beat is alive.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TIMEZONE = "UTC"
# Periodic tasks are also added in veto_cloud/celery.py (the intervals read from settings).
CELERY_BEAT_SCHEDULE = {
    # A minute after each quarter-hour (its writes settled: dashboards.stats.SETTLED_AFTER), count it
    # for the overview's day panels, so no page load counts it. A run sent while no worker was up
    # expires: the next one counts whatever is still missing.
    "dashboards: count the quarter-hour just over": {
        "task": "dashboards.tasks.warm_day_counts",
        "schedule": crontab(minute="1,16,31,46"),
        "options": {"expires": 600},
    },
}
APPROVAL_SWEEP_SECONDS = env_float("VETO_APPROVAL_SWEEP_SECONDS", 5.0, minimum=0.5)
# How often a web process looks in the database for the approvals its long-polls wait on (one
# query for all of them), so a poll answers soon after a resolve even when Redis pub/sub is down.
APPROVAL_WAIT_RECHECK_SECONDS = env_float("VETO_APPROVAL_WAIT_RECHECK_SECONDS", 1.0, minimum=0.05)
# The live dashboards (dashboards/sink.py): how long committed events gather before they leave
# as one message per team, each decision's row rendered once (see the module for the arithmetic).
VETO_LIVE_FLUSH_SECONDS = env_float("VETO_LIVE_FLUSH_SECONDS", 0.1, minimum=0.0)
# Webhooks (webhooks/delivery.py, webhooks/dispatch.py). Links in messages point at
# VETO_PUBLIC_URL (the dashboard's address as the team's people reach it).
VETO_PUBLIC_URL = (env_str("VETO_PUBLIC_URL") or "http://localhost:8000").rstrip("/")
# Slack's Web API and the prefix every interaction's response_url must have (webhooks/slack):
# settings so tests, or a proxy, can stand in for Slack.
SLACK_API_BASE_URL = (env_str("VETO_SLACK_API_BASE_URL") or "https://slack.com/api").rstrip("/")
SLACK_RESPONSE_URL_PREFIX = env_str("VETO_SLACK_RESPONSE_URL_PREFIX") or "https://hooks.slack.com/"
# The waits before each retry, in seconds (the first attempt is at once): Svix's schedule, 5 s,
# 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; "1,1,1" in tests. Each wait gets up to 10 % of jitter.
_retry_schedule = env_list(
    "VETO_WEBHOOK_RETRY_SCHEDULE", ["5", "300", "1800", "7200", "18000", "36000", "36000"]
)
try:
    VETO_WEBHOOK_RETRY_SCHEDULE = tuple(float(item) for item in _retry_schedule)
except ValueError as _exc:
    raise ImproperlyConfigured(
        f"VETO_WEBHOOK_RETRY_SCHEDULE={','.join(_retry_schedule)!r} is not a list of seconds (5,300,1800)"
    ) from _exc
if any(wait < 0 for wait in VETO_WEBHOOK_RETRY_SCHEDULE):
    raise ImproperlyConfigured("VETO_WEBHOOK_RETRY_SCHEDULE has a negative wait")
# A receiver's Retry-After is honoured up to this long (a longer one waits this long).
VETO_WEBHOOK_RETRY_AFTER_MAX_SECONDS = env_float("VETO_WEBHOOK_RETRY_AFTER_MAX_SECONDS", 36000.0, minimum=0.0)
VETO_WEBHOOK_TIMEOUT_SECONDS = env_float("VETO_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# An endpoint whose every attempt failed for this long is disabled (and webhook.failed sent).
VETO_WEBHOOK_FAILURE_WINDOW_SECONDS = env_float(
    "VETO_WEBHOOK_FAILURE_WINDOW_SECONDS", 5 * 24 * 3600.0, minimum=1.0
)
# The beat sweep: dispatch every team with endpoints, send what is due that no task took.
VETO_WEBHOOK_SWEEP_SECONDS = env_float("VETO_WEBHOOK_SWEEP_SECONDS", 5.0, minimum=0.5)
# Lets endpoints on loopback and private networks through the SSRF guard (tests, local demos).
VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("VETO_WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
# The language model that judges the exceptions of mode "llm" policies (runtime/llm_exceptions.py):
# an OpenAI-compatible API ("{base}/chat/completions"; a local Ollama serves one at
# http://127.0.0.1:11434/v1). Empty: no model, so a call the constraints refuse stays refused.
VETO_LLM_BASE_URL = (env_str("VETO_LLM_BASE_URL") or "").strip().rstrip("/")
if VETO_LLM_BASE_URL and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", VETO_LLM_BASE_URL):
    raise ImproperlyConfigured(
        f"VETO_LLM_BASE_URL={VETO_LLM_BASE_URL!r} is not an http(s) URL such as http://127.0.0.1:11434/v1"
    )
# The model asked, unless a policy's llmConfig.preferredModel names another.
VETO_LLM_MODEL = (env_str("VETO_LLM_MODEL") or "llama3.1").strip()
VETO_LLM_API_KEY = env_str("VETO_LLM_API_KEY") or ""
# The whole exchange, connecting included; past it the call is refused (fail closed).
VETO_LLM_TIMEOUT_SECONDS = env_float("VETO_LLM_TIMEOUT_SECONDS", 5.0, minimum=0.01)
# Verdicts are kept per process, by policy version, arguments and model: the same call is not
# asked twice within this many seconds. Failures are never kept.
VETO_LLM_CACHE_SECONDS = env_float("VETO_LLM_CACHE_SECONDS", 300.0, minimum=0.0)
VETO_LLM_CACHE_SIZE = env_int("VETO_LLM_CACHE_SIZE", 10_000, minimum=0)
# The Ed25519 key that signs chain checkpoints: a file outside the database (created 0600 on
# first use when missing), so rewriting the database cannot forge a checkpoint.
AUDIT_SIGNING_KEY_FILE = Path(env_str("VETO_AUDIT_SIGNING_KEY_FILE") or VAR_DIR / "audit-signing.key")
AUDIT_CHECKPOINT_SECONDS = env_float("VETO_AUDIT_CHECKPOINT_SECONDS", 60.0, minimum=1.0)
# Public keys (hex) of this installation's earlier signing keys (``manage.py rotate_audit_key``
# prints them): checkpoints they signed still verify. Checked here, so a typo fails at start.
AUDIT_RETIRED_PUBLIC_KEYS = tuple(
    public_key_hex_checked("VETO_AUDIT_RETIRED_PUBLIC_KEYS", key)
    for key in env_list("VETO_AUDIT_RETIRED_PUBLIC_KEYS", [])
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# DEBUG serves straight from the app and project static folders; production serves what
# collectstatic gathered (the Dockerfile runs it).
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_USE_STATIC_ROOT = not DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenancy.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenancy.permissions.HasApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["common.parsers.StorableJSONParser"],
    "EXCEPTION_HANDLER": "common.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Veto Cloud API",
    "DESCRIPTION": "The control-plane API served to the published `veto` SDK (v0.15.2).",
    "VERSION": "1",
    # 3.1: its JSON Schema dialect is what pydantic emits for the gateway's models.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two "action" choice sets: what a resolve asks for, and what a trail line records.
    "ENUM_NAME_OVERRIDES": {
        "ResolveActionEnum": ["approve", "deny"],
        "TrailActionEnum": "approvals.api.serializers.TRAIL_ACTIONS",
        # An endpoint's ``events`` and a test send's ``event`` are the same choices.
        "WebhookEventEnum": "webhooks.models.WEBHOOK_EVENT_VALUES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "runtime.openapi.add_gateway_routes",
    ],
}

# Request bodies larger than this are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("VETO_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)

# How long an API-key lookup is trusted in a process. Revocation clears the revoking
# process at once; other processes see it within this many seconds.
API_KEY_CACHE_SECONDS = env_float("VETO_API_KEY_CACHE_SECONDS", 5.0, minimum=0.0)
# last_used_at is written at most this often per key (a write per call would double the load).
API_KEY_LAST_USED_RESOLUTION_SECONDS = env_int("VETO_API_KEY_LAST_USED_RESOLUTION_SECONDS", 60, minimum=0)

# Decisions are written by a group-commit writer: each request waits until its row is committed,
# and rows arriving while a commit is in flight share the next one.
DECISION_WRITER_MAX_BATCH = env_int("VETO_DECISION_WRITER_MAX_BATCH", 256, minimum=1)

# How long a process trusts its compiled copy of a team's rule set before re-checking which
# version is active. Publishes also reach every process at once through the channel layer;
# this bounds staleness when such an event is lost.
RULE_SET_RECHECK_SECONDS = env_float("VETO_RULE_SET_RECHECK_SECONDS", 1.0, minimum=0.0)

# blocked_by / requires look back over a session's calls: the server keeps the newest this many
# calls per team and session (of the tools such rules name), for this long after the last one.
# In Redis when REDIS_URL is set (shared by every worker), else in the process.
SESSION_HISTORY_LIMIT = env_int("VETO_SESSION_HISTORY_LIMIT", 100, minimum=1, maximum=10_000)
SESSION_HISTORY_SECONDS = env_int("VETO_SESSION_HISTORY_SECONDS", 24 * 3600, minimum=1)
# Without Redis, at most this many sessions are remembered per process (least recently used go).
SESSION_HISTORY_MAX_SESSIONS = env_int("VETO_SESSION_HISTORY_MAX_SESSIONS", 10_000, minimum=1)

# Per-tool policies' session constraints (maxCalls, budgets, cumulative limits, counters): each
# session's counts, and each held call's reservation, are kept this long after the session's last
# counted call (in Redis when REDIS_URL is set, shared by every worker and node; else in the process).
SESSION_COUNTERS_SECONDS = env_int("VETO_SESSION_COUNTERS_SECONDS", 30 * 24 * 3600, minimum=60)

DEFAULT_APPROVAL_TIMEOUT_SECONDS = env_int("VETO_DEFAULT_APPROVAL_TIMEOUT_SECONDS", 3600, minimum=1)

# GET /v1/events/stream (runtime/event_stream.py): a ": ping" this often (and the look for lost
# last notices), at most this many open streams per process (then 503), and at most this many
# events queued per stream (a client further behind resumes from the database instead).
EVENT_STREAM_HEARTBEAT_SECONDS = env_float("VETO_EVENT_STREAM_HEARTBEAT_SECONDS", 15.0, minimum=0.05)
EVENT_STREAM_MAX_CONNECTIONS = env_int("VETO_EVENT_STREAM_MAX_CONNECTIONS", 1000, minimum=1)
EVENT_STREAM_QUEUE_MAX = env_int("VETO_EVENT_STREAM_QUEUE_MAX", 1000, minimum=1)

# /metrics (veto_cloud/metrics.py, README "Metrics"): off (a JSON 404) until a bearer token is
# set; Prometheus sends it as `authorization: {credentials: ...}`. Every process of this machine
# (web workers, Celery workers) counts into METRICS_DIR, which the scrape sums.
METRICS_TOKEN = env_str("VETO_METRICS_TOKEN") or ""
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("VETO_METRICS_TOKEN must be at least 16 characters (use a random one)")
METRICS_DIR = Path(env_str("VETO_METRICS_DIR") or VAR_DIR / "metrics")

# VETO_LOG_FORMAT=json: one JSON object per line, with the request id, in every process
# (common/logs.py; Celery's handlers in veto_cloud/celery.py, uvicorn's in veto_cloud/serve.py).
LOG_FORMAT = log_format()
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO") or "INFO")
LOGGING_CONFIG = "common.logs.configure"

# Database outages (common/database.py): a Django view that cannot reach the database answers a
# JSON 503 database_unavailable with Retry-After, like the gateway and the API. Innermost, so its
# process_exception runs before any other's.
MIDDLEWARE.append("common.database.DatabaseUnavailableMiddleware")

# Failed lookups of unknown API keys (guesses; revoked keys are not), counted per client address on the gateway
# and the Django API alike (tenancy/throttle.py; in Redis when REDIS_URL is set): past this many
# in the window, the address is answered 429 too_many_failed_keys for the lockout, valid keys
# included (or a lucky guess would still show). The address is uvicorn's client address: it
# trusts X-Forwarded-For only from FORWARDED_ALLOW_IPS (127.0.0.1 unless set).
API_KEY_FAILURES_PER_ADDRESS = env_int("VETO_API_KEY_FAILURES_PER_ADDRESS", 20, minimum=1)
API_KEY_FAILURE_WINDOW_SECONDS = env_float("VETO_API_KEY_FAILURE_WINDOW_SECONDS", 60.0, minimum=1.0)
API_KEY_LOCKOUT_SECONDS = env_float("VETO_API_KEY_LOCKOUT_SECONDS", 60.0, minimum=1.0)

# Rule-set documents (policies/engine/source.py, Limits): what one upload, editor check or
# draft may hold. A document over a limit is refused before any expensive work, with a 413
# (bytes) or 422 rule_set_too_large naming the limit and its value. At these defaults loading
# and compiling the largest document costs well under a second of CPU
# (benchmarks/rule_set_limits.py); raising them raises that cost about in proportion.
RULE_SET_MAX_BYTES = env_int("VETO_RULE_SET_MAX_BYTES", 256 * 1024, minimum=1024, maximum=16 * 1024 * 1024)
RULE_SET_MAX_RULES = env_int("VETO_RULE_SET_MAX_RULES", 1000, minimum=1, maximum=100_000)
# Lists and mappings nested inside each other; the loader recurses once per level.
RULE_SET_MAX_DEPTH = env_int("VETO_RULE_SET_MAX_DEPTH", 32, minimum=4, maximum=200)
RULE_SET_MAX_STRING_LENGTH = env_int("VETO_RULE_SET_MAX_STRING_LENGTH", 16 * 1024, minimum=256)
RULE_SET_MAX_FIXTURE_TESTS = env_int("VETO_RULE_SET_MAX_FIXTURE_TESTS", 1000, minimum=1, maximum=100_000)
# All when: expressions of a document together, in characters: compiling them costs ~8 µs a
# character, most of a document's cost.
RULE_SET_MAX_EXPRESSION_CHARS = env_int("VETO_RULE_SET_MAX_EXPRESSION_CHARS", 40_000, minimum=4000)

# Login throttling (tenancy/login_throttle.py, django-axes): the login page and the admin site
# refuse attempts for LOGIN_LOCKOUT_SECONDS after too many failures for one username from one
# address, from one address, or for one username from anywhere; 429 with a message on the page.
# An admin lifts a lockout with `manage.py axes_reset_username NAME` (or axes_reset_ip,
# axes_reset) or by deleting it in the admin's "Access attempts". Logged as auth.lockout.
INSTALLED_APPS.append("axes")
AUTHENTICATION_BACKENDS = [
    "tenancy.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Wraps the views, inside authentication: turns a refused login into the page that says so.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "axes.middleware.AxesMiddleware",
)
LOGIN_FAILURE_LIMIT = env_int("VETO_LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("VETO_LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
LOGIN_FAILURES_PER_ACCOUNT = env_int("VETO_LOGIN_FAILURES_PER_ACCOUNT", 50, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("VETO_LOGIN_LOCKOUT_SECONDS", 15 * 60, minimum=1)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address", "username"]
AXES_COOLOFF_TIME = "tenancy.login_throttle.cool_off"  # LOGIN_LOCKOUT_SECONDS
AXES_HANDLER = "tenancy.login_throttle.LoginAttemptsHandler"
AXES_LOCKOUT_CALLABLE = "tenancy.login_throttle.lockout_response"
# A success must not wipe the count: a sprayer with an account of their own could reset it.
AXES_RESET_ON_SUCCESS = False
# Attempts while locked out are refused unchecked and not counted: the lockout ends when the page
# said it would, not later for a person who keeps trying.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Axes' per-login access log would be a table written on every login; failures are enough.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# Where rule-set sources are parsed and checked (policies/source_worker.py): in this many worker
# processes per web process, so one upload's CPU never holds the GIL other requests need (0:
# in the request's own thread). At most RULE_SET_PARSE_QUEUE more wait; past that, a 503.
RULE_SET_PARSE_WORKERS = env_int("VETO_RULE_SET_PARSE_WORKERS", 1, minimum=0, maximum=16)
RULE_SET_PARSE_QUEUE = env_int("VETO_RULE_SET_PARSE_QUEUE", 8, minimum=0)
RULE_SET_PARSE_TIMEOUT_SECONDS = env_float("VETO_RULE_SET_PARSE_TIMEOUT_SECONDS", 10.0, minimum=0.1)
