#!/usr/bin/env python
"""PostgreSQL at 10,000,000 decisions and 100,000 pending approvals (issue 14, "How cost grows").

Validate, the approvals' lists and filters, the counts, the export's start and the expiry sweep on
the 10M database of ``benchmarks/explorer_queries.py`` (its loader, ``measure`` and plans; the
explorer's own reads are that benchmark's). A separate process, not a test:

1. **Decisions**: ``explorer_queries.load`` (10M rows, five teams, the big one 9M; skipped when
   loaded).
2. **Approvals**, loaded with SQL when the table does not hold them: ``--approvals`` pending
   (default 100,000) and ``--resolved`` decided ones (default 100,000), each linked to a
   ``require_approval`` decision of its team (``id`` = the decision's ``approval_id``,
   ``decision_id`` = the decision; tool, arguments, context, rule copied from it): the newest such
   decisions are the pending ones, the ones before them the decided ones (70 % approved, 20 %
   denied, 10 % expired, ``resolved_at`` minutes after they were raised). Spread over the teams
   as their decisions are (90 % the big team) and over approver groups (compliance 35 %,
   engineering-leads 20 %, privacy-office 15 %, security 15 %, finance 10 %, platform 5 %; one in
   ten asks compliance and privacy-office together); one in five needs two approvals, one in ten
   escalates to security. Pending expiries: in deadline order over the next 12 hours, the first
   ``--due`` (default 1,000, 1 %) already past. Every run first moves the pending deadlines by
   the time since the last run (``bench_approvals_ref``), so each run finds the same shape.
3. **The demo** in the big team: ``seed_demo --team bench-big`` (groups, alice/bob/..., the
   team's key, the demo rules), plus the groups the approvals name.
4. **Reads**, timed with ``explorer_queries.measure`` (warm; p50/p95/max; EXPLAIN ANALYZE of
   each statement): the browser queue page and its filters (``queue_page``: the summary, the oldest 200), the nav badge
   (``approvals_pending_count_for``), the API's lists (``GET /v1/approvals``, ``/pending``:
   the selector and the serializer, and the read-path sweep they run first), the overview's
   pending panel, /metrics' total, the history; the export's first batch
   (``export_entries_batch``) and its time to the first batch through ``export_json``; the beat
   sweep (``approvals_expire_due``) with none due and with ``--due`` due, in a transaction
   rolled back (the statements it sends are counted; its SELECT is explained).
5. **Validate through the live server** (``python -m veto_cloud.serve``, DEBUG off, 2 workers,
   Redis db ``--redis-url``, port ``--port``): wrk, 32 connections, ``--validate-seconds`` per
   run, ``validate_throughput``'s mix and Lua script, alternating this 10M database (the big
   team) with a fresh small one (``veto_scale10m_small`` on the same server, or ``--small-database-url``),
   ``--validate-runs`` each; every answer must have its decision row. The approvals validate
   raised on the big team are deleted after (the loaded shape stays).

Results: benchmarks/results/scale-10m-<date>[-tag].json and -plans.txt, a table on stdout.

Usage:  .venv/bin/python benchmarks/scale_10m.py [--quick] [--only REGEX] [--no-validate]
Needs:  PostgreSQL (default postgres://postgres@127.0.0.1:5432/veto_bench10m), Redis, wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explorer_queries as eq  # noqa: E402
import validate_throughput as vt  # noqa: E402

ROOT = eq.ROOT
DEFAULT_REDIS = "redis://127.0.0.1:6379/3"
VALIDATE_P99_GOAL_MS = 20.0  # issue 14
# The sweep runs every APPROVAL_SWEEP_SECONDS (5 s): one with a thousand due must end well within it.
SWEEP_GOAL_MS = 1000.0
GROUPS = (
    (["compliance"], 35),
    (["engineering-leads"], 20),
    (["privacy-office"], 15),
    (["security"], 15),
    (["finance"], 10),
    (["platform"], 5),
)
EXTRA_GROUPS = {"security": "Security", "finance": "Finance", "platform": "Platform"}
HORIZON = timedelta(hours=12)
REF = "bench_approvals_ref"

# $team, $n, $offset (how many newer require_approval decisions to skip), $status, $ref, $due_fraction
INSERT_APPROVALS = """
INSERT INTO approvals_approval (
    id, team_id, tool_name, arguments, context, rule_id, rule_name, reason, severity, decision_id,
    approver_groups, min_approvals, escalate_to, escalated_at, timeout_seconds, status, expires_at,
    resolved_by, resolved_at, resolution_comment, created_at)
SELECT d.approval_id, d.team_id, d.tool_name, d.arguments, d.context, d.rule_id, d.rule_name, d.reason,
       d.severity, d.id,
       CASE WHEN d.r %% 10 = 0 THEN '["compliance", "privacy-office"]'::jsonb
            ELSE to_jsonb(ARRAY[(%(groups)s::text[])[1 + width_bucket(random(), %(groups_bounds)s::float8[])]]) END,
       CASE WHEN d.r %% 5 = 0 THEN 2 ELSE 1 END,
       CASE WHEN d.r %% 10 = 3 THEN '["security"]'::jsonb ELSE '[]'::jsonb END,
       NULL,
       greatest(1, extract(epoch FROM d.expires - d.created_at))::int,
       %(status)s, d.expires,
       CASE %(status)s WHEN 'pending' THEN '' WHEN 'expired' THEN 'system:timeout' ELSE 'alice' END,
       CASE %(status)s WHEN 'pending' THEN NULL WHEN 'expired' THEN d.expires
            ELSE d.created_at + (1 + d.r %% 240) * interval '1 minute' END,
       '', d.created_at
FROM (
    SELECT x.*,
           CASE %(status)s
             WHEN 'pending' THEN %(ref)s::timestamptz
                  + ((x.n - 1)::float8 / %(n)s - %(due_fraction)s) * interval '12 hours'
             ELSE x.created_at + interval '4 hours' END AS expires
    FROM (
        SELECT dr.*, row_number() OVER (ORDER BY dr.sequence) AS n, abs(hashtext(dr.id::text)) AS r
        FROM (
            SELECT id, approval_id, team_id, tool_name, arguments, context, rule_id, rule_name, reason,
                   severity, created_at, sequence
            FROM audit_decisionrecord
            WHERE team_id = %(team)s AND decision = 'require_approval'
            ORDER BY sequence DESC
            LIMIT %(n)s OFFSET %(offset)s
        ) AS dr
    ) AS x
) AS d
"""


def approval_shares(total: int, team_ids: dict[str, uuid.UUID]) -> list[tuple[uuid.UUID, int]]:
    """``total`` approvals over the teams as their decisions are (the same shares)."""
    sizes = [int(total * share) for _, share in eq.TEAMS]
    sizes[0] += total - sum(sizes)
    return [(team_ids[slug], n) for (slug, _), n in zip(eq.TEAMS, sizes, strict=True)]


def load_approvals(
    url: str, team_ids: dict[str, uuid.UUID], pending: int, resolved: int, due: int
) -> dict | None:
    with psycopg.connect(url, autocommit=True) as conn:
        have = dict(
            conn.execute(
                "SELECT status = 'pending', count(*) FROM approvals_approval WHERE team_id = ANY(%s) "
                "AND tool_name = ANY(%s) GROUP BY 1",
                (list(team_ids.values()), eq.TOOLS),
            ).fetchall()
        )
        if have.get(True, 0) == pending and have.get(False, 0) == resolved:
            return None
        started = time.perf_counter()
        ref = datetime.now(UTC)
        groups, bounds = eq.weighted([(g[0], w) for g, w in GROUPS])
        with conn.transaction():
            conn.execute("DELETE FROM approvals_approvalevent")
            conn.execute("DELETE FROM approvals_approvalvote")
            conn.execute("DELETE FROM approvals_approval WHERE team_id = ANY(%s)", (list(team_ids.values()),))
            for (team, n_pending), (_, n_resolved) in zip(
                approval_shares(pending, team_ids), approval_shares(resolved, team_ids), strict=True
            ):
                common = {"team": team, "ref": ref, "groups": groups, "groups_bounds": bounds}
                conn.execute(
                    INSERT_APPROVALS,
                    {
                        **common,
                        "n": n_pending,
                        "offset": 0,
                        "status": "pending",
                        "due_fraction": due / pending,
                    },
                )
                # the decided ones, in three slices of the decisions before the pending ones
                offset = n_pending
                approved, denied = int(n_resolved * 0.7), int(n_resolved * 0.2)
                for status, n in (
                    ("approved", approved),
                    ("denied", denied),
                    ("expired", n_resolved - approved - denied),
                ):
                    conn.execute(
                        INSERT_APPROVALS,
                        {**common, "n": n, "offset": offset, "status": status, "due_fraction": 0},
                    )
                    offset += n
            conn.execute(f"CREATE TABLE IF NOT EXISTS {REF} (ref timestamptz NOT NULL)")
            conn.execute(f"DELETE FROM {REF}")
            conn.execute(f"INSERT INTO {REF} VALUES (%s)", (ref,))
        inserted = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE approvals_approval")
        counts = dict(conn.execute("SELECT status, count(*) FROM approvals_approval GROUP BY 1").fetchall())
        return {
            "pending": pending,
            "resolved": resolved,
            "due_at_load": due,
            "insert_seconds": round(inserted, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "by_status": counts,
        }


def reaim_expiries(url: str, team_ids: dict[str, uuid.UUID]) -> datetime:
    """Move the pending deadlines by the time since the last run (and delete what validate raised
    on the benchmark's teams), so each run sees --due due and the rest over the next 12 hours;
    returns the moment they are aimed at (``now`` of the sweep with --due due)."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            ref = conn.execute(f"SELECT ref FROM {REF}").fetchone()[0]
            now = datetime.now(UTC)
            conn.execute(
                "DELETE FROM approvals_approval WHERE team_id = ANY(%s) AND NOT tool_name = ANY(%s)",
                (list(team_ids.values()), eq.TOOLS),
            )
            conn.execute(
                "UPDATE approvals_approval SET expires_at = expires_at + %s, "
                "timeout_seconds = timeout_seconds + %s WHERE status = 'pending'",
                (now - ref, int((now - ref).total_seconds())),
            )
            conn.execute(f"UPDATE {REF} SET ref = %s", (now,))
        conn.execute("VACUUM ANALYZE approvals_approval")
    return now


def seed_big_team(url: str, redis_url: str) -> dict[str, str]:
    """The demo's groups, people, key and rules in the big team (``seed_demo --team``), the
    approvals' other groups beside them; the server's environment."""
    env = dict(
        os.environ,
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        DEBUG="false",
        SECRET_KEY="benchmark-secret-key",
        DJANGO_SETTINGS_MODULE="veto_cloud.settings.base",
        LOG_LEVEL="WARNING",
        VETO_DEMO_API_KEY=vt.API_KEY,
        VETO_DEMO_APPROVER_API_KEY=vt.APPROVER_KEY,
        VETO_DEMO_PASSWORD="benchmark-password",
    )
    subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--team", "bench-big"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    from tenancy.models import Team
    from tenancy.services import approver_group_ensure

    big = Team.objects.get(slug="bench-big")
    for slug, name in EXTRA_GROUPS.items():
        approver_group_ensure(team=big, slug=slug, name=name)
    return env


def rolled_back(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` in a transaction that is rolled back: a sweep timed again and again finds the same
    approvals due (its own transactions become savepoints)."""
    from django.db import transaction

    def run() -> Any:
        with transaction.atomic():
            result = call()
            transaction.set_rollback(True)
        return result

    return run


def queue_page(user: Any, filters: Any) -> dict[str, Any]:
    """What the queue page reads (approvals.views.approvals_queue, without the read-path sweep,
    timed on its own, and the template): the whole queue's summary, the oldest page of rows that
    match, and, when that page is full, how many match."""
    from approvals import selectors

    summary = selectors.approvals_queue_summary_for(user=user)
    rows = selectors.approvals_queue_for(user=user, filters=filters, limit=selectors.QUEUE_PAGE)
    matching = summary.total
    if filters != selectors.QueueFilters():
        matching = len(rows)
        if len(rows) == selectors.QUEUE_PAGE:
            matching = selectors.approvals_queue_count_for(user=user, filters=filters)
    return {"total": summary.total, "rows": len(rows), "matching": matching, "groups": summary.groups}


def reads(team_ids: dict[str, uuid.UUID], ref: datetime) -> list[tuple[str, str, Callable[[], Any], dict]]:
    """(name, group, call, measure options) of every read and operation measured."""
    from django.contrib.auth import get_user_model

    from approvals import selectors, services
    from approvals.api import serializers as s
    from approvals.models import Approval
    from audit.export import export_entries_batch
    from audit.selectors import DecisionFilters
    from dashboards import stats

    team = team_ids["bench-big"]
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["alice", "admin", "carol"])}
    alice, admin = users["alice"], users["admin"]
    tool = eq.TOOLS[0]
    Q = selectors.QueueFilters
    none_due = ref - timedelta(minutes=30)
    pending = Approval.Status.PENDING
    out: list[tuple[str, str, Callable[[], Any], dict]] = [
        (
            "queue page: alice (compliance, privacy-office)",
            "approvals queue",
            lambda: queue_page(alice, Q()),
            {},
        ),
        (
            "queue page: alice, group=compliance",
            "approvals queue",
            lambda: queue_page(alice, Q(group="compliance")),
            {},
        ),
        (
            f"queue page: alice, tool={tool}",
            "approvals queue",
            lambda: queue_page(alice, Q(tool_name=tool)),
            {},
        ),
        (
            f"queue page: alice, tool={eq.TOOLS[-1]} (rarest)",
            "approvals queue",
            lambda: queue_page(alice, Q(tool_name=eq.TOOLS[-1])),
            {},
        ),
        (
            "queue page: admin (team admin; decides only approvals naming no group: none here)",
            "approvals queue",
            lambda: queue_page(admin, Q()),
            {},
        ),
        (
            "nav badge: alice's pending count",
            "approvals queue",
            lambda: selectors.approvals_pending_count_for(user=alice),
            {},
        ),
        (
            "nav badge: admin's pending count",
            "approvals queue",
            lambda: selectors.approvals_pending_count_for(user=admin),
            {},
        ),
        (
            "queue page's read-path sweep (none due)",
            "approvals queue",
            rolled_back(
                lambda: services.approvals_expire_due(
                    now=none_due, team_ids=selectors.approval_team_ids_of(user=alice)
                )
            ),
            {},
        ),
        (
            "history: alice, resolved, newest 100",
            "approvals queue",
            lambda: list(selectors.approvals_resolved_for(user=alice)),
            {},
        ),
        (
            "API /v1/approvals/pending (500, oldest first)",
            "approvals API",
            lambda: [
                s.approval_output(a)
                for a in selectors.approvals_of_team(team_id=team, status=pending).order_by("created_at")[
                    : s.APPROVALS_LISTED_MAX
                ]
            ],
            {},
        ),
        (
            "API /v1/approvals (100, newest)",
            "approvals API",
            lambda: [s.approval_output(a) for a in selectors.approvals_of_team(team_id=team)[:100]],
            {},
        ),
        (
            "API /v1/approvals?status=pending",
            "approvals API",
            lambda: [
                s.approval_output(a) for a in selectors.approvals_of_team(team_id=team, status=pending)[:100]
            ],
            {},
        ),
        (
            f"API /v1/approvals?toolName={tool}",
            "approvals API",
            lambda: [
                s.approval_output(a) for a in selectors.approvals_of_team(team_id=team, tool_name=tool)[:100]
            ],
            {},
        ),
        (
            f"API /v1/approvals?status=pending&toolName={eq.TOOLS[-1]}",
            "approvals API",
            lambda: [
                s.approval_output(a)
                for a in selectors.approvals_of_team(team_id=team, status=pending, tool_name=eq.TOOLS[-1])[
                    :100
                ]
            ],
            {},
        ),
        (
            "API lists' read-path sweep (none due)",
            "approvals API",
            rolled_back(lambda: services.approvals_expire_due(now=none_due, team_ids=[team])),
            {},
        ),
        (
            "overview: pending approvals panel",
            "dashboards.stats",
            lambda: stats.pending_approvals_of_team(team_id=team, now=ref),
            {},
        ),
        (
            "home: pending counts of 5 teams",
            "dashboards.stats",
            lambda: stats.pending_counts_of_teams(team_ids=list(team_ids.values()), now=ref),
            {},
        ),
        (
            "/metrics: pending approvals of every team",
            "dashboards.stats",
            selectors.approvals_pending_total,
            {},
        ),
    ]
    # Its batch reads explained (not the ~9 statements per approval it changes); the sweep with
    # --due due takes seconds, so it is timed twice.
    sweep = {"goal_ms": SWEEP_GOAL_MS, "explain": lambda sql: "SKIP LOCKED" in sql}
    out += [
        (
            "beat sweep: none due",
            "expiry sweep (beat)",
            rolled_back(lambda: services.approvals_expire_due(now=none_due)),
            sweep,
        ),
        (
            "beat sweep: --due due",
            "expiry sweep (beat)",
            rolled_back(lambda: services.approvals_expire_due(now=ref)),
            {**sweep, "runs": 2},
        ),
    ]
    newest = eq.newest_of(team)
    middle = newest - timedelta(days=eq.DAYS / 2)
    F = DecisionFilters
    exports = {
        "no filter (the whole chain)": F(),
        f"toolName={eq.TOOLS[-1]} (rarest)": F(tool_name=eq.TOOLS[-1]),
        "decision=deny": F(decision="deny"),
        "startDate 15 days ago": F(start=middle),
        "one day, 15 days ago": F(start=middle, end=middle + timedelta(days=1)),
        "last 24 h": F(start=newest - timedelta(days=1)),
        f"toolName={eq.TOOLS[-1]} + startDate 15 days ago": F(tool_name=eq.TOOLS[-1], start=middle),
    }
    for label, wanted in exports.items():
        out.append(
            (
                f"export first batch: {label}",
                "audit export",
                lambda w=wanted: export_entries_batch(team_id=team, filters=w, after=0),
                {},
            )
        )
    return out


def export_first_bytes(team: uuid.UUID, runs: int) -> list[dict[str, Any]]:
    """Time to the first batch's bytes through the export's own stream (``export_json``: its
    first chunk is the opening bracket, the second the first batch), on one event loop."""
    from audit.export import export_json
    from audit.selectors import DecisionFilters

    async def first_batch(filters: DecisionFilters) -> int:
        stream = export_json(team_id=team, filters=filters)
        await stream.__anext__()
        chunk = await stream.__anext__()
        await stream.aclose()
        return len(chunk)

    newest = eq.newest_of(team)
    out = []
    loop = asyncio.new_event_loop()
    try:
        for label, filters in (
            ("no filter", DecisionFilters()),
            ("startDate 15 days ago", DecisionFilters(start=newest - timedelta(days=eq.DAYS / 2))),
        ):
            loop.run_until_complete(first_batch(filters))
            times, size = [], 0
            for _ in range(runs):
                t0 = time.perf_counter()
                size = loop.run_until_complete(first_batch(filters))
                times.append((time.perf_counter() - t0) * 1000)
            entry = {
                "query": f"export_json time to first batch: {label}",
                "group": "audit export",
                "runs": runs,
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(eq.percentile_ms(times, 0.95), 2),
                "max_ms": round(max(times), 2),
                "goal_ms": eq.GOAL_MS,
                "met": eq.percentile_ms(times, 0.95) < eq.GOAL_MS,
                "main_node": f"first batch {size:,} bytes (the SQL: the row above)",
                "statements": [],
                "plans": [],
                "result": {"first_batch_bytes": size},
                "times_ms": [round(t, 2) for t in times],
                "load_average": os.getloadavg()[0],
            }
            print(
                f"{entry['query']:<60} {entry['p50_ms']:>9.1f} {entry['p95_ms']:>9.1f} {entry['max_ms']:>9.1f}"
                f"  {'yes' if entry['met'] else 'NO ':<4} {entry['main_node']}",
                flush=True,
            )
            out.append(entry)
    finally:
        loop.close()
    return out


def team_sequence(url: str, team: uuid.UUID | None) -> int:
    with psycopg.connect(url) as conn:
        if team is None:
            return conn.execute("SELECT count(*) FROM audit_decisionrecord").fetchone()[0]
        return conn.execute(
            "SELECT coalesce(max(sequence), 0) FROM audit_decisionrecord WHERE team_id = %s", (team,)
        ).fetchone()[0]


def flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def validate_live(
    big_env: dict[str, str],
    big_team: uuid.UUID,
    small_url: str,
    redis_url: str,
    port: int,
    seconds: int,
    runs: int,
) -> dict[str, Any]:
    """The same server on the 10M database (the big team) and on a fresh small one, alternating."""
    import tempfile

    small_env = vt.seeded_environment(small_url, redis_url)
    script = Path(tempfile.mkdtemp()) / "validate.lua"
    script.write_text(
        vt.lua_for(
            "/v1/tools/validate",
            vt.VALIDATE_BODIES,
            {"Content-Type": "application/json", "X-Veto-API-Key": vt.API_KEY},
        )
    )
    workers = os.cpu_count() or 1
    cases = {
        "10M database (big team, 9M rows)": (big_env, big_env["DATABASE_URL"], big_team),
        "fresh small database": (small_env, small_url, None),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    for run in range(runs):
        for name, (env, url, team) in cases.items():
            flush_redis(redis_url)
            env = dict(
                env, PORT=str(port), WEB_CONCURRENCY=str(workers), VETO_VAR_DIR=os.environ["VETO_VAR_DIR"]
            )
            base = f"http://127.0.0.1:{port}"
            server, log = vt.start_server([sys.executable, "-m", "veto_cloud.serve"], env, base)
            try:
                vt.run_wrk(f"{base}/v1/tools/validate", 3, script)  # warm-up
                time.sleep(0.5)
                before = team_sequence(url, team)
                outcome = vt.run_wrk(f"{base}/v1/tools/validate", seconds, script)
                time.sleep(0.5)  # the last in-flight commits land before counting
                outcome["rows_recorded"] = team_sequence(url, team) - before
                outcome["every_answer_recorded"] = (
                    outcome["socket_errors"] == 0
                    and outcome["non_2xx"] == 0
                    and outcome["requests"]
                    <= outcome["rows_recorded"]
                    <= outcome["requests"] + vt.CONNECTIONS
                )
                outcome["load_average"] = os.getloadavg()[0]
                results[name].append(outcome)
                print(
                    f"validate, {name}, run {run + 1}: {outcome['rps']:.0f}/s p50 {outcome['p50_ms']:.1f} "
                    f"p99 {outcome['p99_ms']:.1f} ms, rows {outcome['rows_recorded']} for {outcome['requests']} "
                    f"answers ({'ok' if outcome['every_answer_recorded'] else 'MISSING/ERRORS'}), "
                    f"load {outcome['load_average']:.1f}",
                    flush=True,
                )
            finally:
                vt.stop_server(server)
    summary = {
        name: {
            "rps_median": statistics.median(r["rps"] for r in rows),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in rows),
            "p99_goal_ms": VALIDATE_P99_GOAL_MS,
            "p99_met": statistics.median(r["p99_ms"] for r in rows) < VALIDATE_P99_GOAL_MS,
            "every_answer_recorded": all(r["every_answer_recorded"] for r in rows),
        }
        for name, rows in results.items()
    }
    return {
        "server": f"python -m veto_cloud.serve, {workers} workers, DEBUG off",
        "connections": vt.CONNECTIONS,
        "seconds_per_run": seconds,
        "runs": results,
        "summary": summary,
    }


def small_url_of(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/veto_scale10m_small"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or eq.DEFAULT_URL)
    parser.add_argument("--small-database-url", help="validate's comparison (dropped and made afresh)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS)
    parser.add_argument("--port", type=int, default=8610)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--approvals", type=int, default=100_000, help="pending approvals")
    parser.add_argument("--resolved", type=int, default=100_000, help="decided approvals (the history)")
    parser.add_argument(
        "--due", type=int, default=1_000, help="pending approvals already past their deadline"
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", help="measure only the reads whose name matches this regex")
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--validate-seconds", type=int, default=10)
    parser.add_argument("--validate-runs", type=int, default=2, help="runs on each database, alternating")
    parser.add_argument("--quick", action="store_true", help="5 runs, validate 1 x 5 s (a smoke run)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.validate_seconds, args.validate_runs = 5, 5, 1
    os.environ.setdefault("VETO_VAR_DIR", "/tmp/var-scale10m")
    logging.getLogger("approvals.services").setLevel(logging.WARNING)  # a line per expired approval
    wall = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    eq.ensure_database(args.database_url)
    eq.setup_django(args.database_url)
    team_ids = eq.ensure_teams(args.rows)
    loaded = eq.load(args.database_url, args.rows, team_ids)
    if loaded:
        print(json.dumps({k: v for k, v in loaded.items() if k not in ("chunks", "indexes")}), flush=True)
    approvals_loaded = load_approvals(args.database_url, team_ids, args.approvals, args.resolved, args.due)
    if approvals_loaded:
        print(json.dumps(approvals_loaded), flush=True)
    env = seed_big_team(args.database_url, args.redis_url)
    ref = reaim_expiries(args.database_url, team_ids)
    print(f"\n{'read':<60} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}  goal  main plan node", flush=True)
    load_before = os.getloadavg()
    entries = []
    for name, group, call, options in reads(team_ids, ref):
        if not args.only or re.search(args.only, name):
            runs = options.pop("runs", args.runs)
            entries.append(eq.measure(name, group, call, min(runs, args.runs), **options))
    if not args.only or re.search(args.only, "export_json"):
        entries += export_first_bytes(team_ids["bench-big"], args.runs)
    from django.db import connections

    connections.close_all()
    validate = None
    if not args.no_validate:
        validate = validate_live(
            env,
            team_ids["bench-big"],
            args.small_database_url or small_url_of(args.database_url),
            args.redis_url,
            args.port,
            args.validate_seconds,
            args.validate_runs,
        )
        reaim_expiries(args.database_url, team_ids)  # what validate raised on the big team goes
    with psycopg.connect(args.database_url) as conn:
        approvals = dict(
            conn.execute("SELECT status, count(*) FROM approvals_approval GROUP BY 1").fetchall()
        )
    results = {
        "machine": {
            **eq.machine(args.database_url),
            **{k: v for k, v in vt.machine().items() if k == "redis"},
        },
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "started": started,
        "wall_seconds": None,
        "database": urlsplit(args.database_url).path.lstrip("/"),
        "rows": args.rows,
        "approvals": {
            "pending": args.approvals,
            "resolved": args.resolved,
            "due": args.due,
            "by_status": approvals,
        },
        "decisions_load": loaded,
        "approvals_load": approvals_loaded,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "runs": args.runs,
        "queries": entries,
        "validate": validate,
    }
    results["wall_seconds"] = round(time.perf_counter() - wall, 1)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    suffix = f"-{args.tag}" if args.tag else ""
    eq.RESULTS.mkdir(parents=True, exist_ok=True)
    plans = eq.RESULTS / f"scale-10m-{stamp}{suffix}-plans.txt"
    with plans.open("w") as out:
        for entry in entries:
            out.write(f"=== {entry['query']}  (p50 {entry['p50_ms']} ms, p95 {entry['p95_ms']} ms)\n")
            out.write(
                f"    {entry.get('queries_per_call', 0)} statement(s) a call; explained: {len(entry['plans'])}\n"
            )
            for sql, plan in zip(entry["statements"], entry["plans"], strict=True):
                out.write(f"--- SQL\n{sql}\n--- EXPLAIN (ANALYZE, BUFFERS)\n{plan}\n\n")
    for entry in entries:
        del entry["plans"]
    (eq.RESULTS / f"scale-10m-{stamp}{suffix}.json").write_text(
        json.dumps(results, indent=2, default=str) + "\n"
    )
    met = sum(1 for e in entries if e["met"])
    print(
        f"\n{met}/{len(entries)} within their goal (p95); load average {load_before[0]:.1f} before, "
        f"{results['load_average_after'][0]:.1f} after; plans in {plans.relative_to(ROOT)}"
    )
    if validate:
        for name, row in validate["summary"].items():
            print(
                f"validate, {name}: {row['rps_median']:.0f}/s, p99 {row['p99_ms_median']:.1f} ms "
                f"(goal < {VALIDATE_P99_GOAL_MS:.0f} ms: {'met' if row['p99_met'] else 'NOT met'}), "
                f"every answer recorded: {row['every_answer_recorded']}"
            )
    print(f"wall time {results['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
