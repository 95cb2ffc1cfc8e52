"""A CPU-time sampler for the server's processes, loaded by ``benchmarks/profile_validate.py``.

Why not only py-spy: py-spy counts a thread whose OS state is "R" as busy, and on a machine with
more runnable threads than cores (this one, shared) a thread waiting for a CPU is "R" too. Its
samples then pile up where a thread is preempted (right after a send wakes PostgreSQL), measured
at 5.8x the thread's real CPU time. This sampler ticks on CPU time instead: ``ITIMER_PROF`` sends
SIGPROF every ``VETO_CPU_SAMPLER_INTERVAL`` seconds of the process's CPU, and the handler, which
Python runs on the main thread (the event loop), counts the stack it interrupted. Time in C code
is counted on the Python frame that called it (the handler runs at the next bytecode). CPU of
other threads also ticks the timer and is counted on the main thread's stack: the profile script
reads other threads' CPU from /proc and reports it apart.

Only active when ``VETO_CPU_SAMPLER_DIR`` is set (this directory on PYTHONPATH makes Python import
it at startup): SIGUSR1 starts sampling, SIGUSR2 stops and writes ``<dir>/<pid>.txt`` in py-spy's
raw (collapsed) format, ``frame;frame;... count``, root first.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("VETO_CPU_SAMPLER_DIR")

if _DIR:
    import signal
    import sys
    from collections import Counter
    from types import FrameType

    _directory: str = _DIR
    _counts: Counter[str] = Counter()
    _interval = float(os.environ.get("VETO_CPU_SAMPLER_INTERVAL", "0.002"))
    _prefixes = sorted({p.rstrip("/") + "/" for p in sys.path if p}, key=len, reverse=True)

    def _short(path: str) -> str:
        for prefix in _prefixes:
            if path.startswith(prefix):
                return path[len(prefix) :]
        return path

    def _sample(signum: int, frame: FrameType | None) -> None:
        stack = []
        while frame is not None:
            code = frame.f_code
            stack.append(f"{code.co_qualname} ({_short(code.co_filename)}:{frame.f_lineno})")
            frame = frame.f_back
        _counts[";".join(reversed(stack))] += 1

    def _start(signum: int, frame: FrameType | None) -> None:
        _counts.clear()
        signal.setitimer(signal.ITIMER_PROF, _interval, _interval)

    def _stop(signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        lines = [f"{stack} {count}" for stack, count in _counts.items()]
        path = os.path.join(_directory, f"{os.getpid()}.txt")
        with open(path + ".part", "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(path + ".part", path)

    signal.signal(signal.SIGPROF, _sample)
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    for _signum in (signal.SIGPROF, signal.SIGUSR1, signal.SIGUSR2):
        signal.siginterrupt(_signum, False)  # restart interrupted system calls
