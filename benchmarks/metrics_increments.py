"""What /metrics adds to a validate call: the decision counter's increment and the latency
histogram's observation (runtime/validate.py), in multiprocess mode as the server runs them.

    VETO_VAR_DIR=/tmp/x .venv/bin/python benchmarks/metrics_increments.py [--calls 200000] [--runs 7]

Prints the best and median of ``--runs`` runs, in microseconds per validate call (both calls
together), and each on its own. Also the writer's per-batch pair (queue gauge set, batch
histogram), which is paid once per group commit, not per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.test")

import django  # noqa: E402

django.setup()

from common import metrics  # noqa: E402


def per_call_us(body: Callable[[], None], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        body()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    assert metrics.values.ValueClass.__name__ == "MmapedValue", "not in multiprocess mode"
    allow = metrics.DECISIONS["allow"]
    latency = metrics.VALIDATE_SECONDS
    perf_counter = time.perf_counter
    started = perf_counter()

    def nothing() -> None:
        pass

    def validate_pair() -> None:
        allow.inc()
        latency.observe(perf_counter() - started)

    def counter_only() -> None:
        allow.inc()

    def histogram_only() -> None:
        latency.observe(0.004)

    def writer_batch() -> None:
        metrics.WRITER_QUEUE_ROWS.set(12)
        metrics.WRITER_BATCH_ROWS.observe(12)

    loop = min(per_call_us(nothing, args.calls) for _ in range(args.runs))
    print(
        f"multiprocess dir {metrics.METRICS_DIR}, {args.calls} calls x {args.runs} runs; loop overhead {loop:.3f} us subtracted"
    )
    for name, body in (
        ("validate: counter + histogram", validate_pair),
        ("  counter inc", counter_only),
        ("  histogram observe", histogram_only),
        ("writer, per batch: gauge set + histogram", writer_batch),
    ):
        runs = [per_call_us(body, args.calls) - loop for _ in range(args.runs)]
        print(f"{name:45s} best {min(runs):6.3f} us  median {statistics.median(runs):6.3f} us")


if __name__ == "__main__":
    main()
