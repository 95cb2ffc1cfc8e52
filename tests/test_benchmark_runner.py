"""``make bench`` (benchmarks/run_all.py): it lists every benchmark, and its goal readers turn raw
results into the right verdicts. Nothing here runs a benchmark or times anything: the readers
are fed results recorded earlier (benchmarks/results/) and small hand-made ones."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS_DIR / "results"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("benchmarks_run_all", BENCHMARKS_DIR / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def recorded(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def verdicts(goals) -> dict[str, bool | None]:
    return {goal.goal: goal.met for goal in goals}


def test_every_script_in_benchmarks_is_run_or_says_why_not(run_all):
    scripts = {path.name for path in BENCHMARKS_DIR.glob("*.py") if not path.name.startswith("_")}
    run = {benchmark.script for benchmark in run_all.BENCHMARKS}

    assert scripts - run - set(run_all.NOT_RUN_ON_THEIR_OWN) == set()
    assert run - scripts == set(), "a registered benchmark has no script"
    assert run & set(run_all.NOT_RUN_ON_THEIR_OWN) == set()


def test_every_benchmark_takes_the_results_option_it_is_given(run_all):
    # make bench passes each script its results path; a script that does not know the option
    # exits 2 at once and leaves its goals "not measured" (validate_by_rule_count did, once)
    for benchmark in run_all.BENCHMARKS:
        source = (BENCHMARKS_DIR / benchmark.script).read_text()
        if benchmark.result_flag:
            assert f'"{benchmark.result_flag}"' in source, benchmark.name
        else:  # it writes benchmarks/results/<name>-<date>.json itself
            assert benchmark.name.replace("_", "-") in source, benchmark.name


def test_validate_vs_cerbos__the_recorded_run_misses_both_speed_goals(run_all):
    goals = verdicts(run_all.validate_vs_cerbos_goals(recorded("validate-vs-cerbos-2026-12-04.json")))

    assert goals["validate at least 0.5x /healthz, 32 connections, same run"] is False
    assert goals["validate p99 under 20 ms at 32 connections"] is False
    assert goals["every answered validate recorded, zero errors"] is True


def test_validate_vs_cerbos__a_fast_enough_run_meets_them(run_all):
    data = {
        "median": {"validate": {"rps": 6000.0, "p99_ms": 12.0}, "healthz": {"rps": 11000.0}},
        "ratios_per_round": {"validate/healthz": [0.52, 0.55, 0.49]},
        "every_validate_answer_recorded_no_errors": True,
    }

    goals = verdicts(run_all.validate_vs_cerbos_goals(data))

    assert goals["validate at least 0.5x /healthz, 32 connections, same run"] is True  # the median round
    assert goals["validate p99 under 20 ms at 32 connections"] is True


def test_webhook_deliveries__a_lost_delivery_fails_the_goal(run_all):
    data = recorded("webhook-deliveries-2026-12-04-full-2.json")
    assert verdicts(run_all.webhook_deliveries_goals(data)) == {
        "webhook deliveries at least 500/s with two workers": True,
        "none lost or doubled, every signature verifies": True,
        "decision -> delivery delay, 200/s, reported": None,
        "decision -> delivery delay, 50/s, reported": None,
    }

    data["phases"][0]["figures"]["lost"] = 1

    assert (
        verdicts(run_all.webhook_deliveries_goals(data))["none lost or doubled, every signature verifies"]
        is False
    )


def test_dashboard_fanout__a_page_missing_rows_fails_the_goal(run_all):
    data = recorded("dashboard-fanout-2026-12-03-final-nodeflate-7.json")
    name = "200 dashboards at 100 decisions/s: every client gets every event"
    assert verdicts(run_all.dashboard_fanout_goals(data))[name] is True

    data["delivery"]["pages_complete"] -= 1
    data["delivery"]["missing_rows_total"] = 3

    assert verdicts(run_all.dashboard_fanout_goals(data))[name] is False


def test_multi_node__the_recorded_checks_hold(run_all):
    goals = verdicts(run_all.multi_node_goals(recorded("multi-node-2026-12-04.json")))

    assert goals["rate limits atomic across nodes"] is True
    assert goals["a node killed mid-load loses nothing"] is True
    assert goals["throughput grows with nodes behind HAProxy"] is True


def test_engine_by_rule_count__the_ratio_is_measured_against_ten_rules(run_all):
    data = {
        "results": [
            {"family": "ir", "rules": 10, "mean_us": 4.0},
            {"family": "ir", "rules": 1000, "mean_us": 8.0},
            {"family": "when", "rules": 10, "mean_us": 4.0},
            {"family": "when", "rules": 1000, "mean_us": 8.4},
        ]
    }

    goals = verdicts(run_all.engine_by_rule_count_goals(data))

    assert goals["engine: 1,000 rules at most 2x the cost of 10 (Policy IR)"] is True
    assert goals["engine: 1,000 rules at most 2x the cost of 10 (when:-heavy)"] is False


def test_a_benchmark_without_results_is_marked_not_measured(run_all, tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    benchmark = run_all.BENCHMARKS[0]
    info = {
        key: "x" for key in ("cpus", "cpu", "memory_gib", "kernel", "python", "postgresql", "redis", "commit")
    }

    table = run_all.markdown("2026-12-07", info, [], [benchmark])

    assert "not measured" in table


def test_web_memory__a_poller_left_without_its_answer_fails_the_goal(run_all):
    data = recorded("web-memory-2026-12-07-long-polls.json")  # the busy run: 2,108 answered 503

    goals = verdicts(run_all.web_memory_goals(data))

    assert goals["5,000 long-polls held by one process, every poller answered"] is False


def test_web_memory__flat_memory_over_a_million_decisions_meets_it(run_all):
    goals = verdicts(run_all.web_memory_goals(recorded("web-memory-2026-12-07-1m.json")))

    assert goals["one web process's memory flat over 1,000,516 decisions (no leak)"] is True


def test_benchmarks_never_get_the_operators_database(run_all, monkeypatch):
    # a benchmark drops and recreates the database DATABASE_URL names
    monkeypatch.setenv("DATABASE_URL", "postgres://prod@db.internal:5432/veto")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    monkeypatch.setenv("PATH", "/usr/bin")

    environment = run_all.benchmark_environment()

    assert "DATABASE_URL" not in environment and "REDIS_URL" not in environment
    assert environment["PATH"] == "/usr/bin"


def test_explorer_queries__the_beat_tasks_are_not_reads_with_a_goal(run_all):
    data = {
        "queries": [
            {"query": "page: first", "group": "audit.selectors", "p95_ms": 2.0},
            {
                "query": "warm task: whole day (after a cache flush)",
                "group": "dashboards.tasks (beat)",
                "p95_ms": 3251.0,
            },
            {"query": "overview: latency, day [cold cache, worst case]", "group": "x", "p95_ms": 812.0},
        ]
    }
    name = "explorer list, filters and stats under 100 ms on 10M decisions (steady state)"
    assert verdicts(run_all.explorer_queries_goals(data))[name] is True

    data["queries"][0]["p95_ms"] = 120.0

    assert verdicts(run_all.explorer_queries_goals(data))[name] is False


def _session_constraints_results(*, ratio_c: float, counted: bool) -> dict:
    def row(rps: float, ratio: float) -> dict:
        return {"rps": rps, "delta_us_vs_a": 1e6 / rps - 1e6 / 3000.0, "ratio_vs_a": ratio}

    return {
        "summary": {"A": row(3000.0, 1.0), "B": row(2900.0, 1.03), "C": row(3000.0 / ratio_c, ratio_c)},
        "all_counted_as_expected": counted,
        "load_average_before_runs": {"min": 0.4, "max": 0.9},
        "micro": {"us_per_call": {"PING (the round trip alone)": 40.0, "count(), 4 limit(s) (C)": 70.0}},
    }


def test_session_constraints__the_verdict_follows_the_cost_of_c_against_a(run_all):
    name = (
        "session constraints (maxCalls, a budget, 2 cumulative limits: 1 script call) cost at most "
        "1.25x the time per validate of a policy without them, 32 connections"
    )
    cheap = verdicts(
        run_all.session_constraints_goals(_session_constraints_results(ratio_c=1.2, counted=True))
    )
    dear = verdicts(
        run_all.session_constraints_goals(_session_constraints_results(ratio_c=1.3, counted=True))
    )

    assert cheap[name] is True
    assert dear[name] is False


def test_session_constraints__a_variant_that_did_not_count_fails_the_check(run_all):
    name = "every answer 200 allow and recorded; the counts in Redis equal the recorded calls"
    goals = verdicts(
        run_all.session_constraints_goals(_session_constraints_results(ratio_c=1.1, counted=False))
    )

    assert goals[name] is False


def test_session_constraints__the_recorded_busy_run_counted_everything_and_misses_the_cost_goal(run_all):
    goals = verdicts(run_all.session_constraints_goals(recorded("session-constraints-2026-12-07.json")))

    assert goals["every answer 200 allow and recorded; the counts in Redis equal the recorded calls"] is True
    cost = next(name for name in goals if name.startswith("session constraints"))
    assert goals[cost] is False  # 1.31x at load 4.6-6.9 on 2 cores
