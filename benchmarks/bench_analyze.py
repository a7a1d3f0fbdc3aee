"""Peak memory and time of `analyze` on a large synthetic result.

Writes N requests (default 20 million; 3 regions, 2 services, 24 accelerators, 1 s device
intervals) with the results package's own writer, then runs the analysis in a child process
and prints its wall time and peak RSS (``ru_maxrss`` of the child), next to the RSS of a child
that only imports the package, so the analysis' own memory is visible::

    .venv/bin/python benchmarks/bench_analyze.py            # 20M requests
    .venv/bin/python benchmarks/bench_analyze.py --requests 2000000 --reuse
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mtia_cluster.engine.cell import Completed, DeviceCounters
from mtia_cluster.results import DeviceInfo, DeviceTracker, ResultsWriter, ServiceSLO

SERVICES = ["ranker", "chat"]
REGIONS = ["us-east", "eu-west", "ap-south"]
N_ACCEL = 24
SLOS = {
    "ranker": ServiceSLO(kind="rr", latency_ns=100_000_000),
    "chat": ServiceSLO(kind="llm", ttft_ns=2_000_000_000, tpot_ns=200_000_000),
}


def _chunk(rng: np.random.Generator, start_id: int, n: int, t0: int, t1: int) -> Completed:
    """n requests arriving in [t0, t1): lognormal latencies, ~1% dropped."""
    arrival = np.sort(rng.integers(t0, t1, n)).astype(np.int64)
    service = rng.integers(0, 2, n).astype(np.int32)
    latency = rng.lognormal(np.log(30e6), 0.6, n).astype(np.int64)
    ttft = (latency * rng.uniform(0.1, 0.5, n)).astype(np.int64)
    tokens = np.where(service == 1, rng.integers(1, 200, n), 0).astype(np.int32)
    accel = rng.integers(0, N_ACCEL, n).astype(np.int32)
    return Completed(
        request_id=np.arange(start_id, start_id + n, dtype=np.int64),
        service=service,
        region=(accel // 8).astype(np.int32),
        host_id=(accel // 4).astype(np.int32),
        accelerator_id=accel,
        arrival_ns=arrival,
        start_ns=arrival,
        first_token_ns=np.where(service == 1, arrival + ttft, arrival + latency),
        finish_ns=arrival + latency,
        status=np.where(rng.random(n) < 0.01, 1, 0).astype(np.int8),
        batch_size=np.ones(n, dtype=np.int32),
        items=np.where(service == 0, 100, 0).astype(np.int32),
        input_tokens=np.where(service == 1, 500, 0).astype(np.int32),
        output_tokens=tokens,
        preemptions=np.zeros(n, np.int32),
        cached_tokens=np.zeros(n, np.int64),
    )


def write_run(out: Path, n: int, seconds: int) -> float:
    """Write the synthetic run; returns the wall time it took."""
    started = time.perf_counter()
    a = np.arange(N_ACCEL, dtype=np.int32)
    info = DeviceInfo(
        a, a // 4, a // 4, a // 8, a % 2, a % 2, np.full(N_ACCEL, 30.0), np.full(N_ACCEL, 90.0)
    )
    rng = np.random.default_rng(np.random.SeedSequence(7))
    span = seconds * 1_000_000_000
    with ResultsWriter(  # overwrite: replaces only an earlier run of the tool at --out
        out, manifest={"seed": 7}, services=SERVICES, regions=REGIONS, slos=SLOS, overwrite=True
    ) as run:
        shard = run.shard(0)
        tracker = DeviceTracker(
            info, regions=REGIONS, chips=["mtia-1", "mtia-2i"], services=SERVICES
        )
        chunks = max(1, n // 1_000_000)
        for k, rows in enumerate(np.array_split(np.arange(n), chunks)):
            t0, t1 = span * k // chunks, span * (k + 1) // chunks
            shard.write_completed(_chunk(rng, int(rows[0]), len(rows), t0, t1))
        busy = np.zeros(N_ACCEL, dtype=np.int64)
        for s in range(seconds):
            busy += rng.integers(100_000_000, 900_000_000, N_ACCEL)
            counters = DeviceCounters(
                a,
                busy.copy(),
                np.ones(N_ACCEL, np.int64),
                np.ones(N_ACCEL, np.int64),
                np.ones(N_ACCEL, np.int64),
            )
            shard.write_devices(
                tracker.interval(
                    counters, start_ns=s * 1_000_000_000, end_ns=(s + 1) * 1_000_000_000
                )
            )
        shard.close()
        run.finalize(wall_time_s=1.0, simulated_span_ns=span)
    return time.perf_counter() - started


_CHILD = """
import sys, time
from pathlib import Path
from mtia_cluster.results import open_results
from mtia_cluster.results.analysis import analyze
from mtia_cluster.results.analysis.plots import write_plots
t = time.perf_counter()
doc = {body}
# VmHWM: this process' peak resident set (ru_maxrss would include the parent's before exec)
rss = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
print(time.perf_counter() - t, len(doc["rows"]) if isinstance(doc, dict) else 0, rss)
"""


def child(body: str) -> tuple[float, int, float]:
    """Run `body` in a fresh interpreter: (wall s, rows, peak RSS MiB of that child)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(body=body)], check=True, capture_output=True, text=True
    )
    wall, rows, peak_kib = proc.stdout.split()
    return float(wall), int(rows), int(peak_kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000_000)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_analyze/run"))
    parser.add_argument("--reuse", action="store_true", help="analyze an existing --out")
    args = parser.parse_args()
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"machine: nproc={os.cpu_count()} cpu={cpu!r} python={platform.python_version()}")
    if not args.reuse:
        wall = write_run(args.out, args.requests, args.seconds)
        print(f"wrote {args.requests:,} requests in {wall:.1f} s")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"result: {args.out} ({size / 2**20:.0f} MiB on disk)")
    base = child("None")
    print(f"import only: peak RSS {base[2]:.0f} MiB")
    for label, body in [
        ("analyze (region x service)", f"analyze({str(args.out)!r})"),
        (
            "analyze --plot report.html (per-service panels + CDF pass + heat map + power)",
            f"write_plots(Path({str(args.out) + '.html'!r}), open_results({str(args.out)!r}), )",
        ),
        (
            "analyze --by rack --window 1m",
            f"analyze({str(args.out)!r}, by=('rack',), window_ns=60_000_000_000)",
        ),
    ]:
        wall, rows, peak = child(body)
        rate = args.requests / wall / 1e6
        print(
            f"{label}: {wall:.1f} s ({rate:.2f} M requests/s), {rows} rows, peak RSS {peak:.0f} MiB"
        )


if __name__ == "__main__":
    main()
