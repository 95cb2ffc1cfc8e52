#!/usr/bin/env python
"""The decisions explorer's and the overview's queries on a 10,000,000-row decisions table.

Issue 12's "done when": the explorer's list, filters and stats each under 100 ms on 10M rows
with the right indexes. A separate process, not a test:

1. **Database**: creates the database if missing and migrates it with the project's migrations
   (``migrate`` through ``django.setup`` with that DATABASE_URL). If the table does not hold
   ``--rows`` decisions yet, loads them with SQL (``INSERT ... SELECT FROM generate_series``, a
   chunk of at most ``CHUNK`` rows per statement and commit), the table's indexes and
   constraints dropped first and rebuilt after from the definitions the migrations made (their
   ``pg_get_indexdef``, kept in ``bench_saved_indexes`` so an interrupted load resumes). Rows go
   in with a plain INSERT: the chain's linking is ``audit_link_decisions(...)`` (audit/0005), a
   function the decision writer calls, not a trigger, and the only trigger on the table
   (``audit_decisionrecord_append_only``, audit/0003) fires on UPDATE and DELETE, never on
   INSERT. The chain columns are filler of realistic size (``hash``/``prev_hash`` 64 hex, not a
   valid chain: the benchmark only reads). Then ``VACUUM ANALYZE`` (visibility map set, so the
   ``INCLUDE (decision)`` indexes give index-only scans).

   Shape: one big team (9M rows) and four smaller ones (600k, 250k, 100k, 50k); ``sequence``
   gapless 1..n per team; ``created_at`` over 30 days increasing with the sequence; 50 tools
   (Zipf, s=1.5: the most used ~30 %, the rarest ~0.1 %); 80 % allow / 15 % deny / 5 %
   require_approval; 30 rule ids (10 % none); 3 models, 3 environments; 200,000 sessions
   (contiguous runs of calls, each of one of 1,000 agents); source 92 % server / 6 % client /
   2 % inline_rules.

2. **Queries**, through the project's own code (audit.selectors, dashboards.stats), each warm
   (one untimed call first), ``--runs`` times: p50, p95, max. For each, the SQL the ORM sent
   (``connection.queries``) is run again under ``EXPLAIN (ANALYZE, BUFFERS)``; the plans are saved
   and the table names each query's main plan node. The overview's day reads are timed twice.
   First without a cache (a ``DummyCache``, the rows named "[cold cache, worst case]"): what the
   first load after the cache was emptied pays. Then as in steady state: the beat task that counts
   each quarter-hour when it ends (``dashboards.stats.day_counts_warm``: the day panels' counts
   and the day latency's histograms) is timed for all the teams, from an empty cache (the whole
   day) and for the one quarter-hour just over, and the day panels are read after it ("[after the
   warm task]": the current quarter-hour only; their first call is ``first_call_ms``). The day
   latency read from the histograms is compared with ``percentile_cont`` over the same rows
   (``day_latency_accuracy`` in the JSON). Their ``now`` is the big team's newest decision, so the
   windows are full however long after the load the benchmark runs.

   ``--insert-cost [INDEX]``: also what one index costs a bulk insert (the load's INSERT of
   ``--insert-rows`` rows, with and without the index, each in a transaction rolled back, then a
   VACUUM), by default the tool + outcome index of audit 0011.

3. **Results**: benchmarks/results/explorer-queries-<date>.json (raw timings, machine, load
   average before and after) and explorer-queries-<date>-plans.txt, and a table on stdout.

Usage:  .venv/bin/python benchmarks/explorer_queries.py [--database-url URL] [--runs 20] [--rows N]
                                                         [--only REGEX] [--insert-cost] [--tag T]
Needs:  PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/veto_bench10m).
        The load takes a few minutes (the JSON says how long); a rerun on a loaded database
        only measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/veto_bench10m"
GOAL_MS = 100.0
CHUNK = 500_000
LOADERS = 2  # connections inserting chunks at once (a 2-core machine)
TABLE = "audit_decisionrecord"

# (slug, rows): the big team first; 10,000,000 in all at --rows 10M (scaled for other --rows).
TEAMS = (
    ("bench-big", 0.90),
    ("bench-mid", 0.06),
    ("bench-small", 0.025),
    ("bench-tiny", 0.01),
    ("bench-mini", 0.005),
)
SESSIONS = 200_000
AGENTS = 1_000
DAYS = 30


def tools() -> list[str]:
    verbs = ("read", "write", "list", "delete", "send", "query", "fetch", "run", "create", "update")
    nouns = ("file", "email", "db", "http", "shell")
    return [f"{n}_{v}" for n in nouns for v in verbs]  # 50


TOOLS = tools()
RULES = [f"rule-{i:02d}" for i in range(1, 31)]
MODELS = (("gpt-4o", 60), ("claude-sonnet-4", 30), ("llama-3-70b", 10))
ENVIRONMENTS = (("production", 70), ("staging", 20), ("development", 10))
OUTCOMES = (("allow", 80), ("deny", 15), ("require_approval", 5))
SOURCES = (("server", 92), ("client", 6), ("inline_rules", 2))


def weighted(pairs: list[tuple[str, float]] | tuple[tuple[str, float], ...]) -> tuple[list[str], list[float]]:
    """A weighted choice in SQL: the values and the cumulative bounds between them, for
    ``values[1 + width_bucket(random(), bounds)]`` (a binary search on a float8 array; a
    subscript into a long text array walks it, and was 100 times slower)."""
    total = sum(w for _, w in pairs)
    bounds, running = [], 0.0
    for _, w in pairs[:-1]:
        running += w / total
        bounds.append(running)
    return [v for v, _ in pairs], bounds


def zipf(values: list[str], s: float) -> list[tuple[str, float]]:
    return [(v, 1 / (k + 1) ** s) for k, v in enumerate(values)]


TOOL_WEIGHTS = zipf(TOOLS, 1.5)
RULE_WEIGHTS = [("", 0.1 * sum(w for _, w in zipf(RULES, 1.0)) / 0.9), *zipf(RULES, 1.0)]

# One chunk of one team: $1 team id, $2 team rows, $3 first sequence, $4 last sequence,
# $5 start of the 30 days, $6 team tag, $7.. weighted slot arrays, $13 team's sessions.
INSERT = f"""
INSERT INTO {TABLE} (
    id, team_id, tool_name, arguments, context, decision, rule_id, rule_name, reason, severity, mode,
    enforcement, source, rules_hash, latency_ms, rule_set_version, approval_id, api_key_id, created_at,
    model, environment, agent_id, session_id, sequence, record, prev_hash, hash)
SELECT gen_random_uuid(), %(team)s::uuid, t.tool, jsonb_build_object('path', '/srv/data/' || t.tool || '/' || t.seq || '.json', 'limit', 100),
       jsonb_build_object('agent_id', t.agent, 'session_id', t.session,
                          'custom', jsonb_build_object('model', t.model, 'environment', t.env)),
       t.decision, t.rule, CASE WHEN t.rule = '' THEN '' ELSE 'Rule ' || t.rule END,
       CASE t.decision WHEN 'allow' THEN 'allowed by ' || coalesce(nullif(t.rule, ''), 'default action')
                       ELSE 'matched ' || coalesce(nullif(t.rule, ''), 'default action') END,
       CASE t.decision WHEN 'deny' THEN 'high' WHEN 'require_approval' THEN 'medium' ELSE '' END,
       'deterministic', 'strict', t.source,
       CASE t.source WHEN 'inline_rules' THEN md5(t.rule) || md5(t.tool) ELSE '' END,
       round((0.3 + 4 * random() ^ 3)::numeric, 3)::float8, 7,
       CASE t.decision WHEN 'require_approval' THEN gen_random_uuid() END, NULL,
       %(start)s::timestamptz + (t.seq - 1) * (interval '{DAYS} days' / %(rows)s),
       t.model, t.env, t.agent, t.session, t.seq,
       '{{"arguments":{{"path":"/srv/data/' || t.tool || '/' || t.seq || '.json","limit":100}},"context":{{"agent_id":"'
         || t.agent || '","session_id":"' || t.session || '"}},"decision":"' || t.decision || '","rule_id":"' || t.rule
         || '","sequence":' || t.seq || ',"source":"' || t.source || '","team":"' || %(team)s::text || '","tool_name":"'
         || t.tool || '","nonce":"' || md5(t.seq::text) || '"}}',
       CASE WHEN t.seq = 1 THEN '' ELSE md5(%(tag)s::text || (t.seq - 1)) || md5((t.seq - 1) || %(tag)s::text) END,
       md5(%(tag)s::text || t.seq) || md5(t.seq || %(tag)s::text)
FROM (
    SELECT g.seq,
           (%(tools)s::text[])[1 + width_bucket(random(), %(tools_bounds)s::float8[])] AS tool,
           (%(outcomes)s::text[])[1 + width_bucket(random(), %(outcomes_bounds)s::float8[])] AS decision,
           (%(rules)s::text[])[1 + width_bucket(random(), %(rules_bounds)s::float8[])] AS rule,
           (%(models)s::text[])[1 + width_bucket(random(), %(models_bounds)s::float8[])] AS model,
           (%(envs)s::text[])[1 + width_bucket(random(), %(envs_bounds)s::float8[])] AS env,
           (%(sources)s::text[])[1 + width_bucket(random(), %(sources_bounds)s::float8[])] AS source,
           'agent-' || lpad((abs(hashtext(%(tag)s::text || s.n)) %% {AGENTS})::text, 4, '0') AS agent,
           'sess-' || %(tag)s::text || '-' || lpad(s.n::text, 6, '0') AS session
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g(seq)
    CROSS JOIN LATERAL (SELECT ((g.seq - 1) * %(sessions)s / %(rows)s)::bigint AS n) AS s
) AS t
"""


def admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


def ensure_database(url: str) -> None:
    admin, name = admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)  # the process's own cache; the overview's reads run uncached anyway
    os.environ.setdefault("SECRET_KEY", "benchmark-secret-key")
    os.environ.setdefault("VETO_VAR_DIR", "/tmp/var-bench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "veto_cloud.settings.base"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def team_rows(total: int) -> list[tuple[str, int]]:
    sizes = [int(total * share) for _, share in TEAMS]
    sizes[0] += total - sum(sizes)
    return [(slug, n) for (slug, _), n in zip(TEAMS, sizes, strict=True)]


def ensure_teams(total: int) -> dict[str, uuid.UUID]:
    from tenancy.models import Organization, Team

    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Benchmark"})
    return {
        slug: Team.objects.get_or_create(slug=slug, defaults={"organization": org, "name": slug})[0].id
        for slug, _ in team_rows(total)
    }


SAVED = "bench_saved_indexes"
DONE = "bench_loaded_chunks"


def drop_indexes(conn: psycopg.Connection) -> None:
    """Keep the table's index and constraint definitions (as the migrations made them), then drop
    them: the load is much faster into a bare table, and they are rebuilt after."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {SAVED} (name text PRIMARY KEY, kind text, definition text)")
    if conn.execute(f"SELECT count(*) FROM {SAVED}").fetchone()[0]:
        return  # an interrupted load: already saved and dropped
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('p', 'u')",
        (TABLE,),
    ).fetchall()
    names = {name for name, _ in constraints}
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (TABLE,)
    ).fetchall()
    with conn.transaction():
        for name, definition in constraints:
            conn.execute(f"INSERT INTO {SAVED} VALUES (%s, 'constraint', %s)", (name, definition))
        for name, definition in indexes:
            if name not in names:
                conn.execute(f"INSERT INTO {SAVED} VALUES (%s, 'index', %s)", (name, definition))
        # Foreign keys first would need the unique ones: keep FKs (team_id) as they are.
        for name, _ in constraints:
            conn.execute(f'ALTER TABLE {TABLE} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            if name not in names:
                conn.execute(f'DROP INDEX "{name}"')


def rebuild_indexes(conn: psycopg.Connection) -> list[dict[str, Any]]:
    built = []
    conn.execute("SET maintenance_work_mem = '1GB'")
    for name, kind, definition in conn.execute(
        f"SELECT name, kind, definition FROM {SAVED} ORDER BY kind DESC, name"
    ).fetchall():
        started = time.perf_counter()
        if kind == "constraint":
            conn.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')
        else:
            conn.execute(definition)
        seconds = time.perf_counter() - started
        built.append({"name": name, "kind": kind, "seconds": round(seconds, 1), "definition": definition})
        print(f"  built {name} in {seconds:.0f} s", flush=True)
        conn.execute(f"DELETE FROM {SAVED} WHERE name = %s", (name,))
    return built


def load(url: str, total: int, team_ids: dict[str, uuid.UUID]) -> dict[str, Any] | None:
    """Load the missing rows (None when every team already has its rows and its indexes)."""
    with psycopg.connect(url, autocommit=True) as conn:
        have = {
            slug: conn.execute(
                f"SELECT coalesce(max(sequence), 0) FROM {TABLE} WHERE team_id = %s", (team_id,)
            ).fetchone()[0]
            for slug, team_id in team_ids.items()
        }
        pending_indexes = (
            conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = %s", (SAVED,)).fetchone()[0]
            and conn.execute(f"SELECT count(*) FROM {SAVED}").fetchone()[0]
        )
        wanted = dict(team_rows(total))
        if all(have[slug] >= n for slug, n in wanted.items()) and not pending_indexes:
            return None
        started = time.perf_counter()
        drop_indexes(conn)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=DAYS)
        arrays: dict[str, Any] = {}
        for name, pairs in (
            ("tools", TOOL_WEIGHTS),
            ("outcomes", OUTCOMES),
            ("rules", RULE_WEIGHTS),
            ("models", MODELS),
            ("envs", ENVIRONMENTS),
            ("sources", SOURCES),
        ):
            arrays[name], arrays[f"{name}_bounds"] = weighted(pairs)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {DONE} (team text, first bigint, PRIMARY KEY (team, first))"
        )
        done = set(conn.execute(f"SELECT team, first FROM {DONE}").fetchall())
        if done:  # resuming: the 30 days of the rows already in (sequence 1 is the first chunk's)
            start = conn.execute(f"SELECT min(created_at) FROM {TABLE}").fetchone()[0]
        work = []
        for slug, n in wanted.items():
            if have[slug] >= n and not any(team == slug for team, _ in done):
                continue  # loaded by an earlier run that finished
            tag = slug.removeprefix("bench-")
            sessions = max(1, round(SESSIONS * n / total))
            for first in range(1, n + 1, CHUNK):
                if (slug, first) not in done:
                    work.append((slug, tag, n, sessions, first, min(n, first + CHUNK - 1)))
        chunks: list[dict[str, Any]] = []
        queue = list(reversed(work))
        lock = threading.Lock()

        def worker() -> None:
            with psycopg.connect(url, autocommit=True) as own:
                while True:
                    with lock:
                        if not queue:
                            return
                        slug, tag, n, sessions, first, last = queue.pop()
                    t0 = time.perf_counter()
                    with own.transaction():  # the rows and the note that they are in, together
                        own.execute(
                            INSERT,
                            {
                                "team": str(team_ids[slug]),
                                "rows": n,
                                "first": first,
                                "last": last,
                                "start": start,
                                "tag": tag,
                                "sessions": sessions,
                                **arrays,
                            },
                        )
                        own.execute(f"INSERT INTO {DONE} VALUES (%s, %s)", (slug, first))
                    seconds = time.perf_counter() - t0
                    with lock:
                        chunks.append(
                            {"team": slug, "first": first, "last": last, "seconds": round(seconds, 1)}
                        )
                    print(f"  {slug} {first:,}..{last:,} in {seconds:.0f} s", flush=True)

        threads = [threading.Thread(target=worker) for _ in range(LOADERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if queue or len(chunks) < len(work):
            raise SystemExit("the load stopped before its end: run again to resume")
        for slug, n in wanted.items():
            tag = slug.removeprefix("bench-")
            # The chain's head, as the writer leaves it (its hash is the filler of the last row).
            conn.execute(
                "INSERT INTO audit_chainhead (team_id, stream, sequence, hash) "
                "VALUES (%s, 'decisions', %s, md5(%s::text || %s::bigint) || md5(%s::bigint || %s::text)) "
                "ON CONFLICT (team_id, stream) DO UPDATE SET sequence = EXCLUDED.sequence, hash = EXCLUDED.hash",
                (team_ids[slug], n, tag, n, n, tag),
            )
        inserted = time.perf_counter() - started
        indexes = rebuild_indexes(conn)
        indexed = time.perf_counter() - started - inserted
        t0 = time.perf_counter()
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        vacuumed = time.perf_counter() - t0
        conn.execute(f"DROP TABLE IF EXISTS {SAVED}")
        conn.execute(f"DROP TABLE IF EXISTS {DONE}")
        return {
            "rows": total,
            "insert_seconds": round(inserted, 1),
            "index_seconds": round(indexed, 1),
            "vacuum_analyze_seconds": round(vacuumed, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "loaders": LOADERS,
            "chunks": chunks,
            "indexes": indexes,
        }


# --- measuring -----------------------------------------------------------------------------------


def scan_nodes(plan: str) -> str:
    """The plan's scans of the decisions table (and any sort), in plan order, for the table."""
    nodes = []
    for line in plan.splitlines():
        text = line.strip().removeprefix("->").strip()
        match = re.match(
            r"((?:Parallel )?(?:Index Only Scan|Index Scan|Bitmap Index Scan|Bitmap Heap Scan|Seq Scan)"
            r"(?: Backward)?(?: using \S+)?(?: on \S+)?)",
            text,
        )
        if match and (
            "audit_decisionrecord" in text or "decision_" in text or "approval" in text or "Seq Scan" in text
        ):
            nodes.append(match.group(1).replace(" on audit_decisionrecord", ""))
        elif re.match(r"(Incremental )?Sort +\(", text):
            nodes.append(text.split(" (")[0].strip())
    seen: list[str] = []
    for node in nodes:
        if node not in seen:
            seen.append(node)
    return " + ".join(seen) or "(no decisions scan)"


def percentile_ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure(
    name: str,
    group: str,
    call: Callable[[], Any],
    runs: int,
    *,
    goal_ms: float = GOAL_MS,
    explain: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Time ``call`` warm (p50/p95/max of ``runs``) and EXPLAIN (ANALYZE, BUFFERS) the SQL it sent:
    every statement, or those ``explain`` picks (a call that writes: its statements are explained
    inside a transaction that is rolled back, never applied; the others are only counted)."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    # warm: the pages this query reads are in memory, as on a page a person keeps open (timed
    # too: for the reads after the warm task it is the first load of a page)
    t0 = time.perf_counter()
    call()
    first_call = (time.perf_counter() - t0) * 1000
    connection.queries_log.clear()  # full (9,000) after a call of many statements: captures nothing
    with CaptureQueriesContext(connection) as captured:
        t0 = time.perf_counter()
        result = call()
        first = (time.perf_counter() - t0) * 1000
    times = [first]
    # A query of seconds is not run 20 times on a shared machine: 5 say enough.
    for _ in range((runs if first < 1000 else min(runs, 5)) - 1):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    sent = [q["sql"] for q in captured.captured_queries]
    statements = [
        sql
        for sql in sent
        if re.match(r"\s*(SELECT|WITH|UPDATE|INSERT|DELETE)\b", sql, re.I)
        and (explain is None or explain(sql))
    ]  # not BEGIN, SAVEPOINT, RELEASE: the transaction's own
    plans = []
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        transaction.set_rollback(True)  # an explained UPDATE or INSERT ran: undone
    main = " | ".join(scan_nodes(plan) for plan in plans)
    entry = {
        "query": name,
        "group": group,
        "runs": len(times),
        "first_call_ms": round(first_call, 2),
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(percentile_ms(times, 0.95), 2),
        "max_ms": round(max(times), 2),
        "met": percentile_ms(times, 0.95) < goal_ms,
        "goal_ms": goal_ms,
        "main_node": main,
        "statements": statements,
        "plans": plans,
        "result": summary(result),
        "times_ms": [round(t, 2) for t in times],
        "queries_per_call": len(sent),
        "load_average": os.getloadavg()[0],
    }
    print(
        f"{name:<44} {entry['p50_ms']:>9.1f} {entry['p95_ms']:>9.1f} {entry['max_ms']:>9.1f}"
        f"  {'yes' if entry['met'] else 'NO ':<4} {main}",
        flush=True,
    )
    return entry


def summary(result: Any) -> Any:
    """What a call returned, small (so the JSON shows the query found what it should)."""
    from audit.selectors import ExplorerPage, OutcomeCounts

    if isinstance(result, ExplorerPage):
        return {
            "rows": len(result.rows),
            "first": result.rows[0].sequence if result.rows else None,
            "older_before": result.older_before,
        }
    if isinstance(result, OutcomeCounts):
        return {
            "total": result.total,
            "allow": result.allow,
            "deny": result.deny,
            "require_approval": result.require_approval,
            "capped": result.capped,
        }
    if isinstance(result, list):
        return [str(item) for item in result[:3]] + ([f"... {len(result)}"] if len(result) > 3 else [])
    if hasattr(result, "total") and hasattr(result, "buckets"):
        return {"total": result.total, "buckets": len(result.buckets)}
    if isinstance(result, dict):
        return {str(k): v for k, v in list(result.items())[:5]}
    return str(result)[:200]


def queries(team_ids: dict[str, uuid.UUID]) -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, group, call) of every read measured, for the big team."""
    from audit.models import DecisionRecord
    from audit.selectors import DecisionFilters, explorer_counts, explorer_newer_before, explorer_page
    from dashboards import stats

    team = team_ids["bench-big"]
    newest_seq, newest_at = (
        DecisionRecord.objects.filter(team_id=team)
        .order_by("-sequence")
        .values_list("sequence", "created_at")[0]
    )
    middle = newest_seq // 2
    day_middle = newest_at - timedelta(days=DAYS / 2)
    rare_tool, common_tool = TOOLS[-1], TOOLS[0]
    session = f"sess-big-{SESSIONS * 9 // 20:06d}"  # a session in the middle of the big team's 30 days
    F = DecisionFilters
    filters = {
        "no filter": F(),
        f"tool={common_tool} (~30 %)": F(tool_name=common_tool),
        f"tool={TOOLS[10]} (~1 %)": F(tool_name=TOOLS[10]),
        f"tool={rare_tool} (rarest, ~0.1 %)": F(tool_name=rare_tool),
        "decision=deny (15 %)": F(decision="deny"),
        "decision=require_approval (5 %)": F(decision="require_approval"),
        "rule=rule-05": F(rule_id="rule-05"),
        "model=llama-3-70b (10 %)": F(model="llama-3-70b"),
        "environment=staging (20 %)": F(environment="staging"),
        "agent=agent-0042 (0.1 %)": F(agent_id="agent-0042"),
        "session (middle, ~45 rows)": F(session_id=session),
        "source=inline_rules (2 %)": F(source="inline_rules"),
        "time: last 24 h": F(start=newest_at - timedelta(days=1)),
        "time: one day, 15 days ago": F(start=day_middle, end=day_middle + timedelta(days=1)),
        f"tool={common_tool} + deny": F(tool_name=common_tool, decision="deny"),
        "agent-0042 + one day, 15 days ago": F(
            agent_id="agent-0042", start=day_middle, end=day_middle + timedelta(days=1)
        ),
        "agent-0042 + last 24 h": F(agent_id="agent-0042", start=newest_at - timedelta(days=1)),
        f"tool={rare_tool} + deny": F(tool_name=rare_tool, decision="deny"),
    }
    out: list[tuple[str, str, Callable[[], Any]]] = [
        ("page: first", "explorer_page", lambda: explorer_page(team_id=team, filters=F())),
        (
            "page: before=middle",
            "explorer_page",
            lambda: explorer_page(team_id=team, filters=F(), before=middle),
        ),
        (
            "page: before=101 (oldest)",
            "explorer_page",
            lambda: explorer_page(team_id=team, filters=F(), before=101),
        ),
    ]
    for label, wanted in filters.items():
        if label != "no filter":
            out.append(
                (f"page: {label}", "explorer_page", lambda w=wanted: explorer_page(team_id=team, filters=w))
            )
    for label, wanted in filters.items():
        out.append(
            (f"counts: {label}", "explorer_counts", lambda w=wanted: explorer_counts(team_id=team, filters=w))
        )
    out += [
        (
            "newer_before: middle",
            "explorer_newer_before",
            lambda: explorer_newer_before(team_id=team, filters=F(), before=middle),
        ),
        (
            f"newer_before: middle, tool={common_tool}",
            "explorer_newer_before",
            lambda: explorer_newer_before(team_id=team, filters=F(tool_name=common_tool), before=middle),
        ),
        (
            "newer_before: middle, deny",
            "explorer_newer_before",
            lambda: explorer_newer_before(team_id=team, filters=F(decision="deny"), before=middle),
        ),
    ]
    now = newest_at + timedelta(seconds=1)
    step = int(stats.DAY_STEP.total_seconds())
    quarter_end = datetime.fromtimestamp(newest_at.timestamp() // step * step - 1, tz=newest_at.tzinfo)
    ids = list(team_ids.values())
    out += [
        (
            "overview: series, hour per minute",
            "dashboards.stats",
            lambda: stats.decision_series(team_id=team, now=now),
        ),
        (
            "overview: series, day per 15 min",
            "dashboards.stats",
            lambda: stats.decision_series(team_id=team, now=now, span=stats.DAY, step=stats.DAY_STEP),
        ),
        (
            "overview: totals of 5 teams, day",
            "dashboards.stats",
            lambda: stats.decision_totals_of_teams(team_ids=ids, now=now),
        ),
        (
            "overview: latency, hour",
            "dashboards.stats",
            lambda: stats.validate_latency(team_id=team, now=now),
        ),
        (
            "overview: latency, day",
            "dashboards.stats",
            lambda: stats.validate_latency(team_id=team, now=now, span=stats.DAY),
        ),
        (
            # ``now`` a second before a quarter-hour ends: the current one, read from the table on
            # every call, is full (~3,100 rows of the big team), the most it holds
            "overview: latency, day, at a quarter-hour's end",
            "dashboards.stats",
            lambda: stats.validate_latency(team_id=team, now=quarter_end, span=stats.DAY),
        ),
        (
            "overview: top denied tools, day",
            "dashboards.stats",
            lambda: stats.top_denied_tools(team_id=team, now=now),
        ),
        ("overview: top rules, day", "dashboards.stats", lambda: stats.top_rules(team_id=team, now=now)),
        (
            "overview: by model, day",
            "dashboards.stats",
            lambda: stats.decisions_by_dimension(team_id=team, name="model", now=now),
        ),
        (
            "overview: by environment, day",
            "dashboards.stats",
            lambda: stats.decisions_by_dimension(team_id=team, name="environment", now=now),
        ),
        (
            "overview: pending approvals",
            "dashboards.stats",
            lambda: stats.pending_approvals_of_team(team_id=team, now=now),
        ),
        ("overview: active policy", "dashboards.stats", lambda: stats.active_policy_of_team(team_id=team)),
    ]
    return out


def machine(url: str) -> dict[str, Any]:
    memory_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    with psycopg.connect(url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in (
                "server_version",
                "shared_buffers",
                "work_mem",
                "effective_cache_size",
                "random_page_cost",
                "max_parallel_workers_per_gather",
                "jit",
            )
        }
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_relation_size(%s)), pg_size_pretty(pg_indexes_size(%s)), "
            "(SELECT reltuples::bigint FROM pg_class WHERE relname = %s)",
            (TABLE, TABLE, TABLE),
        ).fetchone()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "postgresql": settings.pop("server_version"),
        "postgresql_settings": settings,
        "table": {"heap": sizes[0], "indexes": sizes[1], "rows_estimate": sizes[2]},
        "note": "a shared 2-core machine: other helpers were running tests during the run (see load_average)",
    }


def warm_task_entries(team_ids: dict[str, uuid.UUID], runs: int) -> list[dict[str, Any]]:
    """The beat task that counts the day panels' quarter-hours ahead (dashboards.stats.
    day_counts_warm), timed for all the benchmark's teams: from an emptied cache (the whole day),
    and in steady state, where each run finds the quarter-hour just over missing (its keys are
    deleted before each run, as when the window has moved on) and counts only that."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dashboards import stats

    now = newest_of(team_ids["bench-big"]) + timedelta(seconds=1)
    tz = now.tzinfo
    width = int(stats.DAY_STEP.total_seconds())
    first, last = stats._window(now=now, span=stats.DAY, step=stats.DAY_STEP)
    end = stats._settled_before(now=now, step=stats.DAY_STEP, last=last, tz=tz)
    just_over = [
        stats._cache_key(panel, team, width, end - 1)
        for panel in stats.DAY_PANELS
        for team in team_ids.values()
    ]

    def timed(name: str, before: Callable[[], None], count: int) -> dict[str, Any]:
        times, statements = [], 0
        for _ in range(count):
            before()
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                teams = stats.day_counts_warm(now=now)
                times.append((time.perf_counter() - t0) * 1000)
            statements = len(captured.captured_queries)
        entry = {
            "query": name,
            "group": "dashboards.tasks (beat)",
            "runs": len(times),
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(percentile_ms(times, 0.95), 2),
            "max_ms": round(max(times), 2),
            "met": None,  # a background task, not a read: no 100 ms goal
            "main_node": f"{teams} teams x {len(stats.DAY_PANELS)} panels, {statements} queries a run",
            "statements": [],
            "plans": [],
            "result": {"teams": teams, "queries_per_run": statements},
            "times_ms": [round(t, 2) for t in times],
            "load_average": os.getloadavg()[0],
        }
        print(
            f"{name:<44} {entry['p50_ms']:>9.1f} {entry['p95_ms']:>9.1f} {entry['max_ms']:>9.1f}"
            f"  {'-':<4} {entry['main_node']}",
            flush=True,
        )
        return entry

    return [
        timed("warm task: whole day (after a cache flush)", cache.clear, 3),
        timed("warm task: the quarter-hour just over", lambda: cache.delete_many(just_over), runs),
    ]


def newest_of(team: uuid.UUID) -> datetime:
    from audit.models import DecisionRecord

    return (
        DecisionRecord.objects.filter(team_id=team)
        .order_by("-sequence")
        .values_list("created_at", flat=True)[0]
    )


def insert_cost(
    url: str, team_ids: dict[str, uuid.UUID], total: int, index: str, rows: int, repeats: int
) -> dict[str, Any]:
    """What one more index costs a bulk insert: ``rows`` decisions of the big team (past its newest
    sequence) inserted with the load's own INSERT inside a transaction that is rolled back, with
    ``index`` present and with it dropped inside the transaction (also rolled back: the index is
    never gone for anyone else), alternating, ``repeats`` times each."""
    team = team_ids["bench-big"]
    n = team_rows(total)[0][1]
    arrays: dict[str, Any] = {}
    for name, pairs in (
        ("tools", TOOL_WEIGHTS),
        ("outcomes", OUTCOMES),
        ("rules", RULE_WEIGHTS),
        ("models", MODELS),
        ("envs", ENVIRONMENTS),
        ("sources", SOURCES),
    ):
        arrays[name], arrays[f"{name}_bounds"] = weighted(pairs)
    timings: dict[str, list[float]] = {"with": [], "without": []}
    with psycopg.connect(url) as conn:
        newest = conn.execute(f"SELECT max(sequence) FROM {TABLE} WHERE team_id = %s", (team,)).fetchone()[0]
        start = conn.execute(
            f"SELECT min(created_at) FROM {TABLE} WHERE team_id = %s AND sequence = 1", (team,)
        ).fetchone()[0]
        conn.rollback()
        params = {
            "team": str(team),
            "rows": n,
            "first": newest + 1,
            "last": newest + rows,
            "start": start,
            "tag": "big",
            "sessions": max(1, round(SESSIONS * n / total)),
            **arrays,
        }
        for _ in range(repeats):
            for variant in ("with", "without"):
                if variant == "without":
                    conn.execute(f'DROP INDEX "{index}"')
                t0 = time.perf_counter()
                conn.execute(INSERT, params)
                timings[variant].append(time.perf_counter() - t0)
                conn.rollback()
        # The rolled-back rows are dead tuples at the newest end of every index (and pages no longer
        # all-visible): vacuumed, so reads measured after this are as before it.
        conn.autocommit = True
        t0 = time.perf_counter()
        conn.execute(f"VACUUM {TABLE}")
        vacuumed = time.perf_counter() - t0
    best = {variant: min(values) for variant, values in timings.items()}
    median = {variant: statistics.median(values) for variant, values in timings.items()}
    result = {
        "index": index,
        "rows": rows,
        "repeats": repeats,
        "seconds": {variant: [round(t, 3) for t in values] for variant, values in timings.items()},
        "us_per_row_best": {variant: round(t / rows * 1e6, 2) for variant, t in best.items()},
        "added_percent_best": round((best["with"] / best["without"] - 1) * 100, 1),
        "us_per_row_median": {variant: round(t / rows * 1e6, 2) for variant, t in median.items()},
        "added_percent_median": round((median["with"] / median["without"] - 1) * 100, 1),
        "load_average": os.getloadavg()[0],
        "vacuum_after_seconds": round(vacuumed, 1),
    }
    print(
        f"insert cost of {index}: {rows:,} rows, best {best['with']:.2f} s with, {best['without']:.2f} s "
        f"without ({result['added_percent_best']:+} %); medians {median['with']:.2f} / "
        f"{median['without']:.2f} s ({result['added_percent_median']:+} %)",
        flush=True,
    )
    return result


def run(url: str, team_ids: dict[str, uuid.UUID], runs: int, only: str | None) -> dict[str, Any]:
    from django.test.utils import override_settings

    print(f"{'query':<44} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}  <100  main plan node", flush=True)
    load_before = os.getloadavg()
    entries = []
    measured = [q for q in queries(team_ids) if not only or re.search(only, q[0])]
    day = [q for q in measured if q[1] == "dashboards.stats" and ", day" in q[0]]
    # Everything without a cache: the overview's day windows count their whole day on every call,
    # as the first load after the cache was emptied (and before the warm task ran) does: the
    # worst case, not the steady state.
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}):
        for name, group, call in measured:
            cold = (name, group, call) in day
            entries.append(
                measure(
                    f"{name} [cold cache, worst case]" if cold else name,
                    f"{group} (cold)" if cold else group,
                    call,
                    runs,
                )
            )
    # The steady state: the beat task has counted every quarter-hour that is over (it is timed
    # first), so a page's day panels count the current quarter-hour only; their first call, the
    # page's first load, is in each entry too (first_call_ms). A cache with room for a day of
    # keys (LocMemCache keeps 300 by default; production's is Redis).
    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": "explorer-queries",
                "OPTIONS": {"MAX_ENTRIES": 1_000_000},
            }
        }
    ):
        if day:
            entries += warm_task_entries(team_ids, runs)
            for name, group, call in day:
                entries.append(
                    measure(f"{name} [after the warm task]", f"{group} (after warm task)", call, runs)
                )
        accuracy = day_latency_accuracy(team_ids) if any("latency, day" in q[0] for q in day) else None
    return {
        "machine": machine(url),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "goal_ms": GOAL_MS,
        "runs": runs,
        "queries": entries,
        "day_latency_accuracy": accuracy,
    }


def day_latency_accuracy(team_ids: dict[str, uuid.UUID]) -> dict[str, Any]:
    """The day latency as the overview reads it (from the quarter-hours' histograms, after the warm
    task) beside PostgreSQL's percentile_cont over exactly the same rows (the server decisions
    from the window's first quarter-hour on): the histograms' error on the benchmark's data."""
    from dashboards import stats

    team = team_ids["bench-big"]
    now = newest_of(team) + timedelta(seconds=1)
    first, _ = stats._window(now=now, span=stats.DAY, step=stats.DAY_STEP)
    since = stats._moment(first, stats.DAY_STEP, now.tzinfo)
    # the exact read timed too (the day panel's query before the histograms), at this run's load
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        exact = stats._latency(team, since)
        times.append((time.perf_counter() - t0) * 1000)
    approximate = stats.validate_latency(team_id=team, now=now, span=stats.DAY)
    result: dict[str, Any] = {
        "rows": exact.count,
        "rows_in_histograms": approximate.count,
        "percentile_cont_ms": {"p50": round(statistics.median(times), 1), "max": round(max(times), 1)},
    }
    for name in ("p50", "p99"):
        want, got = getattr(exact, name), getattr(approximate, name)
        result[name] = {
            "exact_ms": want,
            "histogram_ms": got,
            "error_percent": round((got / want - 1) * 100, 2),
            "bound_percent": round(stats.LATENCY_ERROR * 100, 2),
        }
    print(
        "day latency, histograms vs percentile_cont over the same "
        f"{exact.count:,} rows: "
        + ", ".join(
            f"{name} {result[name]['histogram_ms']:.3f} vs {result[name]['exact_ms']:.3f} ms "
            f"({result[name]['error_percent']:+.2f} %)"
            for name in ("p50", "p99")
        )
        + f"; bound ±{result['p50']['bound_percent']} %; percentile_cont itself "
        f"{result['percentile_cont_ms']['p50']} ms (p50 of 5)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--only", help="measure only the queries whose name matches this regex")
    parser.add_argument(
        "--insert-cost",
        metavar="INDEX",
        nargs="?",
        const="decision_x_tool_outcome_seq",
        help="also time a bulk insert with and without this index (default: the tool + outcome one)",
    )
    parser.add_argument("--insert-rows", type=int, default=20_000, help="rows per timed insert")
    parser.add_argument("--insert-repeats", type=int, default=10, help="timed inserts with and without")
    parser.add_argument("--tag", default="", help="a suffix of the result files (e.g. with-a-proposed-index)")
    args = parser.parse_args()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    ensure_database(args.database_url)
    setup_django(args.database_url)
    team_ids = ensure_teams(args.rows)
    loaded = load(args.database_url, args.rows, team_ids)
    if loaded:
        print(json.dumps({k: v for k, v in loaded.items() if k not in ("chunks", "indexes")}), flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        (RESULTS / f"explorer-queries-{stamp}-load.json").write_text(json.dumps(loaded, indent=2) + "\n")
    if args.load_only:
        return
    results = run(args.database_url, team_ids, args.runs, args.only)
    if args.insert_cost:
        results["insert_cost"] = insert_cost(
            args.database_url, team_ids, args.rows, args.insert_cost, args.insert_rows, args.insert_repeats
        )
    results["database"] = urlsplit(args.database_url).path.lstrip("/")
    results["rows"] = args.rows
    results["team"] = {"slug": "bench-big", "rows": team_rows(args.rows)[0][1]}
    results["started"] = started
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    suffix = f"-{args.tag}" if args.tag else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_file = RESULTS / f"explorer-queries-{stamp}-load.json"
    if loaded is None and not load_file.exists():
        loads = sorted(RESULTS.glob("explorer-queries-*-load.json"))
        load_file = loads[-1] if loads else load_file
    results["load"] = json.loads(load_file.read_text()) if load_file.exists() else None
    plans = RESULTS / f"explorer-queries-{stamp}{suffix}-plans.txt"
    with plans.open("w") as out:
        for entry in results["queries"]:
            out.write(f"=== {entry['query']}  (p50 {entry['p50_ms']} ms, p95 {entry['p95_ms']} ms)\n")
            for sql, plan in zip(entry["statements"], entry["plans"], strict=True):
                out.write(f"--- SQL\n{sql}\n--- EXPLAIN (ANALYZE, BUFFERS)\n{plan}\n\n")
    for entry in results["queries"]:
        del entry["plans"]
    (RESULTS / f"explorer-queries-{stamp}{suffix}.json").write_text(
        json.dumps(results, indent=2, default=str) + "\n"
    )
    met = sum(1 for entry in results["queries"] if entry["met"])
    print(
        f"\n{met}/{len(results['queries'])} under {GOAL_MS:.0f} ms (p95); load average "
        f"{results['load_average_before'][0]:.1f} before, {results['load_average_after'][0]:.1f} after; "
        f"{results['machine']['nproc']} cores, {results['machine']['memory_gib']} GiB, PostgreSQL "
        f"{results['machine']['postgresql']}; plans in {plans.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
