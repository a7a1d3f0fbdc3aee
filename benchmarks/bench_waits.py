"""Where `simulate -o` waits (issue 18): one streamed run in this process, with per-thread CPU
and run-queue delay from /proc/self/task/*/schedstat (sampled every 0.2 s), the time the
engine's thread blocks in ``BackgroundWriter.submit`` (writer queue full), the time the
writer thread waits for work and the time the engine waits for the next trace chunk.

A thread's wall time is its CPU, its run-queue delay (runnable, no core free: other
processes or our own threads) and its sleeps (queue waits measured here; the GIL, file
writes and page faults make up the rest). Threads have no names in /proc: the two busiest
are the engine's (main) and the writer's; Arrow's pool threads decode the trace.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_waits.py SCENARIO TRACE OUT_DIR
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mtia_cluster.results.background as bg
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.results.stream import stream_run

WAITS = {"submit_blocked_s": 0.0, "writer_idle_s": 0.0, "chunk_wait_s": 0.0}
COUNTS = {"submits": 0, "queue_full": 0}


def _instrument() -> None:
    """Wrap BackgroundWriter.submit and Queue.get to add up their waits per thread."""
    submit, get = bg.BackgroundWriter.submit, queue.Queue.get

    def timed_submit(self: Any, fn: Any, *args: Any) -> None:
        t0 = time.perf_counter()
        COUNTS["queue_full"] += self._queue.full()
        submit(self, fn, *args)
        WAITS["submit_blocked_s"] += time.perf_counter() - t0
        COUNTS["submits"] += 1

    def timed_get(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        item = get(self, *args, **kwargs)
        name = threading.current_thread().name
        key = {"results-writer": "writer_idle_s", "MainThread": "chunk_wait_s"}.get(name)
        if key is not None:
            WAITS[key] += time.perf_counter() - t0
        return item

    bg.BackgroundWriter.submit = timed_submit  # type: ignore[method-assign]
    queue.Queue.get = timed_get  # type: ignore[method-assign]


def _sample(stats: dict[str, tuple[float, float]]) -> None:
    """Keep each thread's last (CPU s, run-queue s) from schedstat."""
    while True:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as fh:
                    cpu_ns, wait_ns, _ = map(int, fh.read().split())
            except OSError:
                continue
            stats[tid] = (cpu_ns / 1e9, wait_ns / 1e9)
        time.sleep(0.2)


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    cfg, trace, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    _instrument()
    stats: dict[str, tuple[float, float]] = {}
    threading.Thread(target=_sample, args=(stats,), daemon=True).start()
    shutil.rmtree(out, ignore_errors=True)
    scenario = load_scenario(cfg)
    t0, cpu0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    run = stream_run(scenario, 1, trace, out, manifest={"command": "simulate"})
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    time.sleep(0.3)
    print(
        f"{run.rows:,} requests: wall {wall:.2f} s, process CPU {cpu:.2f} s; load average "
        f"{load0:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    for tid, (cpu_s, wait_s) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
        if cpu_s > 0.05:
            print(f"  thread {tid}: CPU {cpu_s:.2f} s, run-queue delay {wait_s:.2f} s")
    print("  " + ", ".join(f"{k} {v:.2f}" for k, v in WAITS.items()), COUNTS)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
