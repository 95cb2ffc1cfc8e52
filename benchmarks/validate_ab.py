#!/usr/bin/env python
"""Interleaved A/B of the validate benchmark: an earlier commit (A) against this checkout (B).

Why interleaved: this machine's speed drifts by more than the differences worth finding (other
work on the 2 cores, PostgreSQL's own state), so one run of each says little. Runs alternate
A B A B ..., each a whole ``validate_throughput.py`` run (fresh database, real server, wrk), and
the figure to quote is the median of the per-pair ratios B/A, with their min and max as the noise.

A runs from a ``git worktree`` of ``--baseline`` (its own code and migrations) with this
checkout's virtualenv; both get the same DATABASE_URL / REDIS_URL (each run recreates the
database). ``PYTHONPATH`` points each run at its own tree, so the editable install of this
checkout does not leak into A.

Usage:  .venv/bin/python benchmarks/validate_ab.py --baseline dcb6d55 [--pairs 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (("validate", "rps"), ("validate", "p50_ms"), ("validate", "p99_ms"), ("healthz", "rps"))


def one_run(tree: Path, *, seconds: int, workers: int) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [
        sys.executable,
        str(tree / "benchmarks" / "validate_throughput.py"),
        "--runs",
        "1",
        "--seconds",
        str(seconds),
        "--workers",
        str(workers),
        "--json",
        str(out),
    ]
    finished = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(
            f"run in {tree} failed ({finished.returncode}):\n{finished.stdout[-2000:]}{finished.stderr[-2000:]}"
        )
    summary = json.loads(out.read_text())
    out.unlink()
    return {f"{name}.{key}": summary["median"][name][key] for name, key in FIGURES} | {
        "recorded": summary["every_answer_recorded_no_errors"]
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="the commit to compare against (A)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write every run and the ratios here")
    args = parser.parse_args()

    baseline = Path(tempfile.mkdtemp(prefix="veto-ab-")) / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(baseline), args.baseline], cwd=ROOT, check=True
    )
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        for pair in range(1, args.pairs + 1):
            # Alternate which side goes first, so a drift within a pair does not favour one side.
            order = [("A", baseline), ("B", ROOT)] if pair % 2 else [("B", ROOT), ("A", baseline)]
            for side, tree in order:
                runs[side].append(one_run(tree, seconds=args.seconds, workers=args.workers))
                r = runs[side][-1]
                print(
                    f"pair {pair} {side}: validate {r['validate.rps']:.0f}/s p50 {r['validate.p50_ms']:.1f} ms "
                    f"p99 {r['validate.p99_ms']:.1f} ms, healthz {r['healthz.rps']:.0f}/s, recorded {r['recorded']}",
                    flush=True,
                )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False)

    print(f"\nA = {args.baseline}, B = this checkout; {args.pairs} pairs of {args.seconds} s runs")
    print("| figure | A median | B median | B/A per pair: median (min-max) |")
    print("|---|---:|---:|---:|")
    ratios: dict[str, list[float]] = {}
    for name, key in FIGURES:
        figure = f"{name}.{key}"
        a = [r[figure] for r in runs["A"]]
        b = [r[figure] for r in runs["B"]]
        ratios[figure] = [y / x for x, y in zip(a, b, strict=True)]
        q = ratios[figure]
        print(
            f"| {figure} | {statistics.median(a):.1f} | {statistics.median(b):.1f} | "
            f"{statistics.median(q):.3f} ({min(q):.3f}-{max(q):.3f}) |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"baseline": args.baseline, "runs": runs, "ratios": ratios}, indent=2)
        )
    return 0 if all(r["recorded"] for side in runs.values() for r in side) else 1


if __name__ == "__main__":
    sys.exit(main())
