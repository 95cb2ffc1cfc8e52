#!/usr/bin/env python
"""Webhook dispatch cost: how long turning 1,000 committed events into deliveries takes.

Writes N denials (and as many allows, which dispatch must read past) for one team through the
server's decision insert (runtime.writer.insert_decisions, the chained rows production writes),
with one, then three enabled endpoints, and times ``webhooks.dispatch.dispatch_team`` (reading
the chain after the cursors in pages, building each message once, inserting the deliveries,
advancing the cursors). Also times the sink's handler per decision event (the decision path's
only cost). Enqueueing is replaced by a no-op: the broker is not what is measured.

Usage:  DATABASE_URL=postgres://.../veto_whbench .venv/bin/python benchmarks/webhook_dispatch.py [--events 1000]
The database is migrated and a fresh team made on each run (nothing is deleted).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.base")
os.environ.setdefault("SECRET_KEY", "webhook-dispatch-benchmark")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    from audit.models import ChainStream
    from audit.selectors import chain_heads_of_team
    from common.events import Event, EventType
    from runtime.writer import insert_decisions
    from tenancy.models import Organization, Team
    from tests.factories import decision_row
    from webhooks import dispatch, sink
    from webhooks.models import WebhookDelivery, WebhookEndpoint

    dispatch.enqueue = lambda ids: None  # type: ignore[assignment]
    sink.sender().enabled = False

    print(f"database: {connection.vendor}; {args.events} denials + {args.events} allows per run")
    for endpoints in (1, 3):
        costs = []
        for _ in range(args.runs):
            org = Organization.objects.create(name="bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
            team = Team.objects.create(organization=org, name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
            heads = chain_heads_of_team(team_id=team.id)
            for n in range(endpoints):
                WebhookEndpoint.objects.create(
                    team=team,
                    name=f"e{n}",
                    url="https://93.184.215.14/h",
                    events=["deny"],
                    decisions_cursor=heads[ChainStream.DECISIONS],
                    events_cursor=heads[ChainStream.EVENTS],
                )
            rows = []
            for _ in range(args.events):
                rows.append(decision_row(team.id, decision="deny", tool_name="transfer", rule_id="r", severity="high"))
                rows.append(decision_row(team.id, decision="allow", tool_name="read"))
            for start in range(0, len(rows), 500):
                insert_decisions(rows[start : start + 500], [])
            started = time.perf_counter()
            made = dispatch.dispatch_team(team.id)
            elapsed = time.perf_counter() - started
            assert made == args.events * endpoints, made
            assert WebhookDelivery.objects.filter(team=team).count() == made
            costs.append(elapsed)
        best = min(costs)
        print(
            f"dispatch, {endpoints} endpoint(s): {best * 1000:.0f} ms for {args.events} denials "
            f"({best * 1000 / args.events * 1000 / endpoints:.0f} ms per 1,000 deliveries); runs "
            + ", ".join(f"{c * 1000:.0f}" for c in costs)
            + " ms"
        )

    sink.sender().enabled = True
    sink.sender().add = lambda team_id: None  # type: ignore[method-assign]
    team_id = uuid.uuid4()
    sink.sender().teams = frozenset({team_id})
    sink.sender().loaded_at = time.monotonic() + 1e9
    for outcome in ("allow", "deny"):
        event = Event(EventType.DECISION_CREATED, team_id, "decisions", 1, datetime.now(UTC), {"decision": outcome})
        rounds = 200_000
        started = time.perf_counter_ns()
        for _ in range(rounds):
            sink.handle(event)
        print(f"sink.handle, {outcome}: {(time.perf_counter_ns() - started) / rounds:.0f} ns per event")


if __name__ == "__main__":
    main()
