"""What /metrics counts: the metric objects every process increments (README, "Metrics").

Every process (each web worker, each Celery worker process, the tests) writes its values to its
own files in ``settings.METRICS_DIR`` (prometheus-client's multiprocess mode); /metrics
(``veto_cloud/metrics.py``) sums the directory at scrape time, so what one worker counted is in
the scrape whichever worker answers it. The directory is chosen here, before the first metric
exists: prometheus-client picks its storage when a metric is made.

Labels are bounded enums only (a decision's outcome, a kind of connection): never a team, a
tool, a key or a URL, whose number grows with the data. Hot-path callers use the children bound
below (``DECISIONS["allow"].inc()``), not ``.labels()``, which takes a lock and a dict lookup on
every call.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram, values

from common.metrics_files import forget_own_live_gauges


def _use_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    forget_own_live_gauges(directory)
    # The value class is chosen when prometheus_client is imported; set it again in case
    # something imported it before the directory was known.
    values.ValueClass = values.get_value_class()


METRICS_DIR = Path(settings.METRICS_DIR)
_use_directory(METRICS_DIR)

DECISION_OUTCOMES = ("allow", "deny", "require_approval")

_decisions = Counter(
    "veto_decisions",
    "Tool calls decided by POST /v1/tools/validate and POST /v1/validate, by the answer sent",
    ["decision"],
)
DECISIONS = {outcome: _decisions.labels(decision=outcome) for outcome in DECISION_OUTCOMES}

VALIDATE_SECONDS = Histogram(
    "veto_validate_duration_seconds",
    "Server time of a validate call, from the request's parse to its decision row committed",
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

WRITER_BATCH_ROWS = Histogram(
    "veto_decision_writer_batch_rows",
    "Decision rows in one group commit of the decision writer",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WRITER_QUEUE_ROWS = Gauge(
    "veto_decision_writer_queue_rows",
    "Decision rows waiting for the writer when it last took a batch (0 once it is idle), all web processes",
    multiprocess_mode="livesum",
)

_long_polls = Gauge(
    "veto_long_polls_held",
    "Long-polls waiting now (?wait=): an approval's state, or a newer rule-set version",
    ["kind"],
    multiprocess_mode="livesum",
)
LONG_POLLS = {kind: _long_polls.labels(kind=kind) for kind in ("approval", "rule_set")}

_event_stream_clients = Gauge(
    "veto_event_stream_clients",
    "Connected event consumers: the live dashboards' websockets and the SDK event streams (SSE)",
    ["kind"],
    multiprocess_mode="livesum",
)
EVENT_STREAM_CLIENTS = {
    kind: _event_stream_clients.labels(kind=kind) for kind in ("dashboard_websocket", "sse")
}

_webhook_attempts = Counter(
    "veto_webhook_attempts",
    "Webhook delivery attempts by result (a failed one is retried on the schedule unless it was final)",
    ["result"],
)
WEBHOOK_ATTEMPTS = {result: _webhook_attempts.labels(result=result) for result in ("delivered", "failed")}
WEBHOOK_DELIVERIES_FAILED = Counter(
    "veto_webhook_deliveries_failed",
    "Webhook deliveries given up: the retry schedule ran out, or the receiver refused for good",
)
