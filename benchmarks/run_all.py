#!/usr/bin/env python
"""Every benchmark, one after another, each its own load-generating process; then the goals table.

``make bench`` runs this. Each benchmark in ``BENCHMARKS`` is started as a separate process
(``python benchmarks/<script>.py ...``) with its raw results sent to
``benchmarks/results/<name>-<date>.json``; a benchmark that fails is recorded and the rest still
run. At the end every goal the issues set is read back from those raw results and printed as a
Markdown table, goal by goal, with the measured figure and met / NOT met, and written with the
machine and each benchmark's wall time to ``benchmarks/results/bench-<date>.md`` and ``.json``.
The README's table ("Performance", "Every goal, measured") is that file.

    .venv/bin/python benchmarks/run_all.py                  # all of them (about an hour here)
    .venv/bin/python benchmarks/run_all.py --only engine_vs_sdk,multi_node
    .venv/bin/python benchmarks/run_all.py --goals-only     # rebuild the table from today's results
    make bench BENCHMARKS="engine_vs_sdk multi_node"

Needs what the benchmarks need: PostgreSQL and Redis (DATABASE_URL / REDIS_URL are passed on;
each benchmark makes its own database), wrk, haproxy, npm for Cerbos. Nothing here is a test:
the figures depend on the machine, so the table records it and the load average around each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Goal:
    """One goal of an issue, read back from a benchmark's raw results."""

    issue: int
    goal: str
    measured: str
    met: bool | None  # None: reported, no pass/fail target


Reader = Callable[[dict[str, Any]], list[Goal]]


@dataclass(frozen=True)
class Benchmark:
    name: str  # the script is benchmarks/<name>.py, run with its defaults
    goals: Reader
    what: str
    # How the script is told where its raw results go; None: it writes them to
    # benchmarks/results/<name with dashes>-<date>.json on its own.
    result_flag: str | None = "--json"

    @property
    def script(self) -> str:
        return f"{self.name}.py"


def _get(data: Any, *path: Any, default: Any = None) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return default
    return data


def _fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


# -- goal readers, one per benchmark -------------------------------------------------------------


def validate_vs_cerbos_goals(data: dict[str, Any]) -> list[Goal]:
    median = data.get("median", {})
    ratios = sorted(_get(data, "ratios_per_round", "validate/healthz", default=[]) or [])
    ratio = statistics.median(ratios) if ratios else None
    validate = median.get("validate", {})
    healthz = median.get("healthz", {})
    off = median.get("cerbos_audit_off", {})
    on = median.get("cerbos_audit_file", {})
    p99 = validate.get("p99_ms")
    return [
        Goal(
            14,
            "validate at least 0.5x /healthz, 32 connections, same run",
            f"{_fmt(ratio, 2)}x ({_fmt(validate.get('rps'), 0)} vs {_fmt(healthz.get('rps'), 0)} req/s, "
            f"range {_fmt(ratios[0] if ratios else None, 2)}-{_fmt(ratios[-1] if ratios else None, 2)})",
            ratio is not None and ratio >= 0.5,
        ),
        Goal(
            14, "validate p99 under 20 ms at 32 connections", f"{_fmt(p99)} ms", p99 is not None and p99 < 20
        ),
        Goal(
            2,
            "every answered validate recorded, zero errors",
            str(data.get("every_validate_answer_recorded_no_errors")),
            bool(data.get("every_validate_answer_recorded_no_errors")),
        ),
        Goal(
            14,
            "Cerbos beside us (audit off / audit to a file), reported",
            f"{_fmt(off.get('rps'), 0)} / {_fmt(on.get('rps'), 0)} req/s, p99 {_fmt(off.get('p99_ms'))} / "
            f"{_fmt(on.get('p99_ms'))} ms",
            None,
        ),
    ]


def engine_vs_sdk_goals(data: dict[str, Any]) -> list[Goal]:
    speedup = data.get("speedup")
    return [
        Goal(
            3,
            "rule engine at least 5x the SDK's local engine per decision (100 rules)",
            f"{_fmt(speedup)}x ({_fmt(data.get('sdk_us'))} vs {_fmt(data.get('server_us'))} us)",
            speedup is not None and speedup >= 5 and bool(data.get("identical_decisions")),
        )
    ]


def _by_rule_count(rows: list[dict[str, Any]], family: str, key: str) -> dict[int, float]:
    return {row["rules"]: row[key] for row in rows if row.get("family") == family and key in row}


def engine_by_rule_count_goals(data: dict[str, Any]) -> list[Goal]:
    goals = []
    for family, label in (("ir", "Policy IR"), ("when", "when:-heavy")):
        means = _by_rule_count(data.get("results", []), family, "mean_us")
        if 10 in means and 1000 in means:
            ratio = means[1000] / means[10]
            tail = f", 10,000 rules {means[10000] / means[10]:.1f}x" if 10000 in means else ""
            goals.append(
                Goal(
                    14,
                    f"engine: 1,000 rules at most 2x the cost of 10 ({label})",
                    f"{ratio:.1f}x ({means[10]:.1f} -> {means[1000]:.1f} us{tail})",
                    ratio <= 2,
                )
            )
    return goals


def approval_pollers_goals(data: dict[str, Any]) -> list[Goal]:
    polling = data.get("sdk_style_polling", {})
    long_poll = data.get("long_poll", {})
    hand_off = long_poll.get("hand_off_after_resolve_response", {})
    return [
        Goal(
            4,
            "1,000 concurrent pollers on GET /v1/approvals/{id}, no errors",
            f"{_fmt(polling.get('pollers'))} pollers, {_fmt(polling.get('errors'))} errors, "
            f"p99 {_fmt(polling.get('p99_ms'))} ms; {_fmt(long_poll.get('long_pollers'))} long-polls, "
            f"{_fmt(long_poll.get('errors'))} errors",
            polling.get("pollers", 0) >= 1000 and polling.get("errors") == 0 and long_poll.get("errors") == 0,
        ),
        Goal(
            4,
            "hand-off resolve -> long-poll answer, reported",
            f"p50 {_fmt(hand_off.get('p50_ms'))} ms, p99 {_fmt(hand_off.get('p99_ms'))} ms",
            None,
        ),
    ]


def dashboard_fanout_goals(data: dict[str, Any]) -> list[Goal]:
    delivery = data.get("delivery", {})
    latency = data.get("latency_row_received_minus_request_sent", {})
    complete = delivery.get("pages_complete") == delivery.get("pages") and not delivery.get(
        "missing_rows_total"
    )
    p95 = latency.get("p95_ms")
    return [
        Goal(
            12,
            "200 dashboards at 100 decisions/s: every client gets every event",
            f"{_fmt(delivery.get('pages_complete'))}/{_fmt(delivery.get('pages'))} pages complete, "
            f"{_fmt(delivery.get('missing_rows_total'))} missing, {_fmt(delivery.get('duplicate_rows_total'))} doubled",
            bool(complete) and not delivery.get("duplicate_rows_total"),
        ),
        Goal(
            12,
            "decision -> dashboard p95 under 250 ms",
            f"p50 {_fmt(latency.get('p50_ms'))}, p95 {_fmt(p95)}, p99 {_fmt(latency.get('p99_ms'))} ms",
            p95 is not None and p95 < 250,
        ),
    ]


def webhook_deliveries_goals(data: dict[str, Any]) -> list[Goal]:
    phases = {phase.get("phase"): phase.get("figures", {}) for phase in data.get("phases", [])}
    burst = phases.get("burst", {})
    drain = _get(burst, "throughput", "drain_per_second")
    lost = sum(figures.get("lost", 0) + figures.get("doubled_webhook_ids", 0) for figures in phases.values())
    refused = sum(_get(figures, "signatures", "refused", default=0) for figures in phases.values())
    goals = [
        Goal(
            13,
            "webhook deliveries at least 500/s with two workers",
            f"{_fmt(drain)}/s (burst of {_fmt(burst.get('deny_decisions'))})",
            drain is not None and drain >= 500,
        ),
        Goal(
            13,
            "none lost or doubled, every signature verifies",
            f"{lost} lost or doubled, {refused} signatures refused, over {len(phases)} phases",
            bool(phases) and lost == 0 and refused == 0,
        ),
    ]
    for name, figures in sorted(phases.items()):
        if name and name.startswith("steady"):
            latency = figures.get("latency_created_at_to_receipt", {})
            goals.append(
                Goal(
                    13,
                    f"decision -> delivery delay, {name.removeprefix('steady-')}/s, reported",
                    f"p50 {_fmt(latency.get('p50_ms'))}, p95 {_fmt(latency.get('p95_ms'))} ms",
                    None,
                )
            )
    return goals


def audit_chain_goals(data: dict[str, Any]) -> list[Goal]:
    append = data.get("append", {})
    verify = data.get("verify", {})
    rps = append.get("validate_rps_median")
    goals = [
        Goal(
            5,
            "2,000 chained, durable decisions/s on PostgreSQL",
            f"{_fmt(rps, 0)}/s, p99 {_fmt(append.get('validate_p99_ms_median'))} ms",
            rps is not None and rps >= 2000 and bool(append.get("every_answer_recorded_no_errors")),
        ),
        Goal(
            5,
            "verify 1,000,000 entries, reported",
            f"{_fmt(verify.get('best_seconds'))} s ({_fmt(verify.get('rows_per_second'))}/s), ok {verify.get('ok')}",
            None,
        ),
    ]
    for export in _get(data, "export", "exports", default=[]) or []:
        before, peak = export.get("server_rss_before_mib"), export.get("server_peak_rss_during_mib")
        goals.append(
            Goal(
                5,
                f"export of 1,000,000 entries ({export.get('format')}) with bounded memory",
                f"{_fmt(export.get('seconds'))} s, RSS {_fmt(before)} -> peak {_fmt(peak)} MiB",
                None if before is None or peak is None else peak - before < 64,
            )
        )
    return goals


def explorer_queries_goals(data: dict[str, Any]) -> list[Goal]:
    queries = data.get("queries", [])
    measured = [q for q in queries if q.get("p95_ms") is not None]
    cold = [q for q in measured if "cold cache" in q.get("query", "")]
    # The beat task that fills the overview's cache: background work with no read goal.
    warm_task = [q for q in measured if q.get("query", "").startswith("warm task")]
    steady = [q for q in measured if q not in cold and q not in warm_task]
    slow = [q for q in steady if q["p95_ms"] >= 100]
    worst = max((q["p95_ms"] for q in steady), default=None)
    goals = [
        Goal(
            12,
            "explorer list, filters and stats under 100 ms on 10M decisions (steady state)",
            f"{len(steady) - len(slow)}/{len(steady)} reads under 100 ms p95, worst {_fmt(worst)} ms",
            bool(steady) and not slow,
        )
    ]
    if cold:
        goals.append(
            Goal(
                12,
                "overview day panels after a cache flush (worst case), reported",
                f"p95 {_fmt(min(q['p95_ms'] for q in cold), 0)}-{_fmt(max(q['p95_ms'] for q in cold), 0)} ms",
                None,
            )
        )
    return goals


def validate_by_rule_count_goals(data: dict[str, Any]) -> list[Goal]:
    goals = []
    for family, label in (("ir", "Policy IR"), ("when", "when:-heavy")):
        verdict = _get(data, "goals", family, default={})
        if not verdict:
            continue
        again = verdict.get("smallest_again", {})
        goals.append(
            Goal(
                14,
                f"validate through the server: 1,000 rules at most 2x the cost of 10 ({label})",
                f"p50 at 1 connection {_fmt(verdict.get('server_light_p50_ratio'), 2)}x, CPU per request at 32 "
                f"{_fmt(verdict.get('server_load_cost_ratio'), 2)}x (10 rules measured again: "
                f"{_fmt(again.get('light_p50'), 2)}x / {_fmt(again.get('load_cost'), 2)}x)",
                verdict.get("server_met"),
            )
        )
    served = data.get("all_served"), data.get("all_decisions_equal_engine"), data.get("all_answers_recorded")
    goals.append(
        Goal(
            14,
            "every size served, the server decides as the engine, every answer recorded",
            f"served {served[0]}, equal {served[1]}, recorded {served[2]}",
            all(value is True for value in served),
        )
    )
    return goals


def scale_10m_goals(data: dict[str, Any]) -> list[Goal]:
    goals = []
    by_group: dict[str, list[dict[str, Any]]] = {}
    for query in data.get("queries", []):
        by_group.setdefault(query.get("group", "?"), []).append(query)
    for group, queries in by_group.items():
        met = [q for q in queries if q.get("met")]
        missed = [q for q in queries if not q.get("met")]
        if met:
            worst = max(q["p95_ms"] for q in met)
            goal_ms = max(q.get("goal_ms", 100) for q in met)
            goals.append(
                Goal(
                    14,
                    f"{group} at 100,000 pending / 10M decisions: {len(met)} reads under {_fmt(goal_ms, 0)} ms",
                    f"worst p95 {_fmt(worst)} ms",
                    True,
                )
            )
        for query in missed:
            goals.append(
                Goal(
                    14,
                    f"{group}: {query.get('query')} under {_fmt(query.get('goal_ms', 100), 0)} ms",
                    f"p95 {_fmt(query.get('p95_ms'))} ms",
                    False,
                )
            )
    for database, runs in (_get(data, "validate", "runs", default={}) or {}).items():
        if not runs:
            continue
        p99s = sorted(run["p99_ms"] for run in runs)
        rates = sorted(run["rps"] for run in runs)
        recorded = all(run.get("every_answer_recorded") for run in runs)
        goals.append(
            Goal(
                14,
                f"validate p99 under 20 ms on the {database}",
                f"p99 {_fmt(p99s[0])}-{_fmt(p99s[-1])} ms, {_fmt(rates[0], 0)}-{_fmt(rates[-1], 0)} req/s, "
                f"every answer recorded {recorded}",
                p99s[-1] < 20 and recorded,
            )
        )
    return goals


def web_memory_goals(data: dict[str, Any]) -> list[Goal]:
    goals = []
    decisions = data.get("decisions") or {}
    steps = decisions.get("steps") or []
    if steps:
        first, last = steps[0], steps[-1]
        growth = (last["rss_kib"] - first["rss_kib"]) / 1024
        goals.append(
            Goal(
                14,
                f"one web process's memory flat over {_fmt(last['decisions'])} decisions (no leak)",
                f"RSS {_fmt(first['rss_kib'] / 1024)} MiB at {_fmt(first['decisions'])} -> "
                f"{_fmt(last['rss_kib'] / 1024)} MiB ({growth:+.1f} MiB, "
                f"{_fmt(_get(decisions, 'growth_bytes_per_decision', 'rss'), 2)} B/decision); "
                f"every answer recorded {decisions.get('every_answer_recorded')}",
                growth < 16 and bool(decisions.get("every_answer_recorded")),
            )
        )
    polls = data.get("long_polls") or {}
    if polls:
        goals.append(
            Goal(
                14,
                f"{_fmt(polls.get('long_polls'))} long-polls held by one process, every poller answered",
                f"{_fmt(polls.get('held_per_server_metrics'))} held, "
                f"{_fmt(polls.get('rss_per_long_poll_kib'))} KiB each; answers {polls.get('answers')}",
                bool(polls.get("every_poller_answered")),
            )
        )
    return goals


def listed_goals(issue: int) -> Reader:
    """For the benchmarks that write their own ``goals`` list ({goal, measured, met})."""

    def read(data: dict[str, Any]) -> list[Goal]:
        return [
            Goal(issue, entry["goal"], entry["measured"], entry.get("met")) for entry in data.get("goals", [])
        ]

    return read


def multi_node_goals(data: dict[str, Any]) -> list[Goal]:
    throughput = [row for row in data.get("throughput", []) if row.get("through_haproxy", True)]
    by_nodes = {row["nodes"]: row for row in throughput}
    figures = ", ".join(
        f"{nodes} node{'s' if nodes > 1 else ''} {_fmt(row.get('median_rps'), 0)}/s"
        for nodes, row in sorted(by_nodes.items())
    )
    one, two = _get(by_nodes, 1, "median_rps"), _get(by_nodes, 2, "median_rps")
    checks = data.get("checks", {})
    killed = checks.get("node_killed", {})
    return [
        Goal(
            14,
            "throughput grows with nodes behind HAProxy",
            figures,
            None if one is None or two is None else two > one,
        ),
        Goal(
            14,
            "rate limits atomic across nodes",
            f"{_get(checks, 'rate_limit', 'limit')} admitted of {_get(checks, 'rate_limit', 'calls')}: "
            f"{_get(checks, 'rate_limit', 'ok')}",
            bool(_get(checks, "rate_limit", "ok")),
        ),
        Goal(
            14,
            "long-polls and live events reach clients on any node",
            f"long-poll hand-off {_fmt(_get(checks, 'long_poll', 'hand_off_after_resolve_response_ms'))} ms; "
            f"live events ok {_get(checks, 'live_events', 'ok')}",
            bool(_get(checks, "long_poll", "ok")) and bool(_get(checks, "live_events", "ok")),
        ),
        Goal(
            14,
            "a node killed mid-load loses nothing",
            f"{_fmt(killed.get('recorded_of_the_200s'))} of {_fmt(killed.get('answered_200'))} answered recorded, "
            f"{_fmt(killed.get('problem_count'))} problems",
            bool(killed.get("ok")),
        ),
    ]


def rule_set_limits_goals(data: dict[str, Any]) -> list[Goal]:
    rows = data.get("rows", [])
    worst = max(rows, key=lambda row: row.get("editor_check_s", 0), default=None)
    if worst is None:
        return []
    seconds = worst.get("editor_check_s", 0)
    return [
        Goal(
            10,
            "one rule-set document at the upload limits costs well under 1 s of CPU",
            f"worst {seconds:.2f} s ({worst.get('document')}, {_fmt(worst.get('bytes'))} bytes)",
            seconds < 1,
        )
    ]


def rule_set_upload_latency_goals(data: dict[str, Any]) -> list[Goal]:
    results = data.get("results", {})
    alone = _get(results, "alone", "POST /v1/tools/validate", "p99_ms")
    during = [
        _get(figures, "POST /v1/tools/validate", "p99_ms")
        for name, figures in results.items()
        if name.startswith("while uploading")
    ]
    during = [value for value in during if value is not None]
    return [
        Goal(
            10,
            "validate p99 while uploads at the limits are parsed (one client, sequential), reported",
            f"alone {_fmt(alone)} ms, during uploads {_fmt(min(during, default=None))}-{_fmt(max(during, default=None))} ms",
            None,
        )
    ]


def session_constraints_goals(data: dict[str, Any]) -> list[Goal]:
    summary = data.get("summary", {})
    baseline, counted = summary.get("A", {}), summary.get("C", {})
    ratio = counted.get("ratio_vs_a")
    added = ", ".join(
        f"{key} {row['delta_us_vs_a']:+.0f}"
        for key, row in summary.items()
        if key != "A" and "delta_us_vs_a" in row
    )
    loads = data.get("load_average_before_runs", {})
    micro = _get(data, "micro", "us_per_call", default={}) or {}
    return [
        Goal(
            15,
            "session constraints (maxCalls, a budget, 2 cumulative limits: 1 script call) cost at most "
            "1.25x the time per validate of a policy without them, 32 connections",
            f"{_fmt(ratio, 2)}x ({_fmt(baseline.get('rps'), 0)} -> {_fmt(counted.get('rps'), 0)} req/s); "
            f"µs per request added vs none: {added}; load {_fmt(loads.get('min'), 2)}-{_fmt(loads.get('max'), 2)}",
            None if ratio is None else ratio <= 1.25,
        ),
        Goal(
            15,
            "every answer 200 allow and recorded; the counts in Redis equal the recorded calls",
            str(data.get("all_counted_as_expected")),
            bool(data.get("all_counted_as_expected")),
        ),
        Goal(
            15,
            "the count script alone vs a Redis round trip (sequential, one loop), reported",
            "; ".join(f"{name} {_fmt(value, 0)} µs" for name, value in micro.items()) or "not measured",
            None,
        ),
    ]


BENCHMARKS: tuple[Benchmark, ...] = (
    # name (benchmarks/<name>.py), its goals' reader, what it measures
    Benchmark("validate_vs_cerbos", validate_vs_cerbos_goals, "validate vs /healthz vs Cerbos, interleaved"),
    Benchmark("profile_validate", listed_goals(14), "where a validate request's CPU goes"),
    Benchmark("engine_vs_sdk", engine_vs_sdk_goals, "rule engine vs the SDK's"),
    Benchmark("engine_by_rule_count", engine_by_rule_count_goals, "engine at 10-10,000 rules", "--out"),
    Benchmark(
        "validate_by_rule_count",
        validate_by_rule_count_goals,
        "validate through the server, 10-10,000 rules",
        "--out",
    ),
    Benchmark("approval_pollers", approval_pollers_goals, "1,000 pollers, long-polls"),
    Benchmark("dashboard_fanout", dashboard_fanout_goals, "200 live pages at 100 decisions/s"),
    Benchmark("webhook_deliveries", webhook_deliveries_goals, "webhook deliveries/s and delay"),
    Benchmark("audit_chain", audit_chain_goals, "chained append, verify, export"),
    Benchmark("explorer_queries", explorer_queries_goals, "the explorer and overview on 10M decisions", None),
    Benchmark("scale_10m", scale_10m_goals, "100k pending approvals, export, sweep, validate at 10M", None),
    Benchmark("web_memory", web_memory_goals, "RSS after 1M decisions, 5,000 long-polls"),
    Benchmark("rule_set_limits", rule_set_limits_goals, "CPU of one document at the upload limits"),
    Benchmark("rule_set_upload_latency", rule_set_upload_latency_goals, "latency while uploads are parsed"),
    Benchmark("multi_node", multi_node_goals, "1-3 nodes behind HAProxy, cross-node checks"),
    Benchmark(
        "session_constraints",
        session_constraints_goals,
        "what a tool policy's session constraints and rate limits add to validate",
        "--out",
    ),
)


# Scripts in benchmarks/ that ``make bench`` does not run on their own, and why: each is a tool
# for a question already answered, or a piece another benchmark runs. tests/test_benchmarks_listed.py
# checks that every script is in one list or the other.
NOT_RUN_ON_THEIR_OWN: dict[str, str] = {
    "run_all.py": "this runner",
    "validate_throughput.py": "validate vs /healthz alone; validate_vs_cerbos measures the same mix beside Cerbos, "
    "and audit_chain runs it for the append part",
    "validate_ab.py": "an interleaved A/B of two commits, for deciding a change",
    "request_id_overhead.py": "a microbenchmark of one lever (the request id), in process",
    "metrics_increments.py": "a microbenchmark of one lever (the /metrics increments), in process",
    "webhook_dispatch.py": "a microbenchmark of dispatch alone; webhook_deliveries measures delivery end to end",
}


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict[str, Any]:
    def first_line(command: list[str]) -> str | None:
        if not shutil.which(command[0]):
            return None
        try:
            return (
                subprocess.run(command, capture_output=True, text=True, timeout=10)
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, IndexError, subprocess.SubprocessError):
            return None

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration, ValueError):
        memory_kib = 0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": first_line(["psql", "--version"]),
        "redis": " ".join((first_line(["redis-server", "--version"]) or "").split()[:3]) or None,
        "commit": commit.stdout.strip() or None,
    }


def benchmark_environment() -> dict[str, str]:
    """The environment without DATABASE_URL and REDIS_URL: given one, a benchmark drops and
    recreates that database and empties that Redis database (its own fresh state), so an
    operator's shell pointing at a real deployment would lose it to ``make bench``. Without them
    each uses its own: PostgreSQL and Redis on 127.0.0.1, databases ``veto_bench*`` and
    ``veto_*`` of its own name, Redis databases 3-14."""
    return {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}


def result_path(benchmark: Benchmark, date: str) -> Path:
    return RESULTS / f"{benchmark.name.replace('_', '-')}-{date}.json"


def run_one(benchmark: Benchmark, date: str, log_dir: Path) -> dict[str, Any]:
    path = result_path(benchmark, date)
    command = [sys.executable, str(ROOT / "benchmarks" / benchmark.script)]
    if benchmark.result_flag:
        command += [benchmark.result_flag, str(path)]
    log = log_dir / f"{benchmark.name}.log"
    print(f"== {benchmark.name}: {' '.join(command[1:])}  (log: {log})", flush=True)
    before = load_average()
    started = time.monotonic()
    with log.open("w") as out:
        # The benchmark's output goes to the terminal and to its log, line by line.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=benchmark_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            out.write(line)
        code = process.wait()
    seconds = round(time.monotonic() - started, 1)
    print(f"== {benchmark.name}: exit {code} after {seconds} s", flush=True)
    return {
        "name": benchmark.name,
        "command": command[1:],
        "exit_code": code,
        "wall_seconds": seconds,
        "load_average_before": before,
        "load_average_after": load_average(),
        "results": str(path.relative_to(ROOT)),
        "log": str(log),
    }


def read_goals(benchmark: Benchmark, date: str) -> tuple[list[Goal], str | None]:
    path = result_path(benchmark, date)
    if not path.exists():
        return [], f"no results at {path.relative_to(ROOT)}"
    try:
        return benchmark.goals(json.loads(path.read_text())), None
    except (ValueError, KeyError, TypeError) as error:
        return [], f"could not read {path.relative_to(ROOT)}: {error!r}"


def markdown(date: str, info: dict[str, Any], runs: list[dict[str, Any]], chosen: list[Benchmark]) -> str:
    by_name = {run["name"]: run for run in runs}
    lines = [
        f"Measured {date} on {info['cpus']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, Linux {info['kernel']}, "
        f"Python {info['python']}, {info['postgresql']}, {info['redis']}, commit {info['commit']}.",
        "",
        "| issue | goal | measured | met | benchmark |",
        "|---:|---|---|---|---|",
    ]
    for benchmark in chosen:
        goals, problem = read_goals(benchmark, date)
        run = by_name.get(benchmark.name)
        exit_code = None if run is None else run["exit_code"]
        where = f"`{benchmark.name}`" + (f" (exit {exit_code})" if exit_code else "")
        if problem:
            lines.append(f"| | {benchmark.what} | {problem} | not measured | {where} |")
        for goal in goals:
            met = {True: "met", False: "**NOT met**", None: "reported"}[goal.met]
            lines.append(f"| {goal.issue} | {goal.goal} | {goal.measured} | {met} | {where} |")
    if runs:
        lines += [
            "",
            "| benchmark | wall time | exit | load average before -> after |",
            "|---|---:|---:|---|",
        ]
        for run in runs:
            lines.append(
                f"| `{run['name']}` | {run['wall_seconds'] / 60:.1f} min | {run['exit_code']} | "
                f"{run['load_average_before'][0]} -> {run['load_average_after'][0]} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma- or space-separated benchmark names (default: all)")
    parser.add_argument("--goals-only", action="store_true", help="run nothing; read today's results")
    parser.add_argument("--date", default=datetime.now(UTC).date().isoformat(), help="whose results to read")
    args = parser.parse_args()

    names = [name for name in (args.only or "").replace(",", " ").split() if name]
    known = {benchmark.name: benchmark for benchmark in BENCHMARKS}
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(known)}")
    chosen = [known[name] for name in names] if names else list(BENCHMARKS)

    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = Path(os.environ.get("VETO_BENCH_LOGS", f"/tmp/veto-bench-{args.date}"))
    log_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    runs = [] if args.goals_only else [run_one(benchmark, args.date, log_dir) for benchmark in chosen]

    table = markdown(args.date, info, runs, chosen)
    suffix = "" if not names else "-" + "-".join(benchmark.name for benchmark in chosen)
    if len(suffix) > 80:
        suffix = "-partial"
    (RESULTS / f"bench-{args.date}{suffix}.md").write_text(table)
    goals = {
        benchmark.name: [asdict(goal) for goal in read_goals(benchmark, args.date)[0]] for benchmark in chosen
    }
    summary = {"date": args.date, "machine": info, "runs": runs, "goals": goals}
    (RESULTS / f"bench-{args.date}{suffix}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + table)
    return 1 if any(run["exit_code"] != 0 for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
