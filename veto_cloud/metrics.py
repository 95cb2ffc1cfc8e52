"""``GET /metrics``: Prometheus's text format, behind a bearer token (README, "Metrics").

Off until ``VETO_METRICS_TOKEN`` is set: then a JSON 404 like any unknown path, saying how to turn
it on. With it set, a request without ``Authorization: Bearer <token>``, or with another token, is
a JSON 401. What is served: the counters, histograms and gauges of every process of this machine
(``common/metrics.py``, summed from the multiprocess directory), and a few figures read from the
database at scrape time, which hold whichever machine the workers run on.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from approvals.selectors import approvals_pending_total
from common.errors import error_body
from common.metrics import METRICS_DIR
from common.metrics_files import prune_dead_processes
from webhooks.selectors import delivery_backlog

logger = logging.getLogger(__name__)


class DatabaseFigures(Collector):
    """Gauges read from the database at each scrape: a few counts on partial or leading indexes."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "veto_metrics_database_up", "1 if the database figures below were read at this scrape"
        )
        try:
            pending = approvals_pending_total()
            backlog = delivery_backlog()
        except DatabaseError:
            logger.warning("metrics.database_figures_failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "veto_approvals_pending", "Approvals waiting for a decision, all teams", value=pending
        )
        yield GaugeMetricFamily(
            "veto_webhook_deliveries_due",
            "Webhook deliveries due now that no worker holds (the outbox's backlog)",
            value=backlog.due,
        )
        yield GaugeMetricFamily(
            "veto_webhook_oldest_due_delivery_age_seconds",
            "How long the most overdue webhook delivery has been due (0 when none is)",
            value=backlog.oldest_due_seconds,
        )
        yield GaugeMetricFamily(
            "veto_webhook_endpoints_failing",
            "Enabled webhook endpoints whose attempts fail since their last success",
            value=backlog.endpoints_failing,
        )


def _authorized(request: HttpRequest) -> bool:
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


def exposition() -> bytes:
    """Every process's metrics of this machine, and the database's figures, in the text format."""
    # A worker that died (uvicorn replaces it, Celery recycles its children) leaves its live
    # gauges' files behind; its counters stay and keep counting in the sum.
    prune_dead_processes(METRICS_DIR, counters_too=False)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(METRICS_DIR))
    registry.register(DatabaseFigures())
    return generate_latest(registry)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN:
        return JsonResponse(
            error_body("not_found", "metrics are off: set VETO_METRICS_TOKEN to serve them"), status=404
        )
    if not _authorized(request):
        response = JsonResponse(
            error_body("unauthenticated", "send the metrics token as Authorization: Bearer <token>"),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    scrape = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    scrape["Cache-Control"] = "no-store"
    return scrape
