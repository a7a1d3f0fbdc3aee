"""Replay speed on Ray: R regions x K MTIA 2i racks of HC1 at ~70% utilization.

Prints: trace generation, Ray start, replay wall time on local Ray (one actor per region),
the same replay in one process without Ray (the engine's own cost), requests per second, the
Ray share estimate and the peak memory of all processes. Compare in one run: this machine is
small and noisy.

    .venv/bin/python benchmarks/bench_replay.py --regions 16 --racks 10 --requests 10000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from mtia_cluster.distributed.ray_env import ray_session
from mtia_cluster.distributed.runner import ReplayOptions, replay
from mtia_cluster.traces.io import write_trace

ITEMS_PER_S_PER_ACCEL = 300_000  # HC1 on MTIA 2i at batch ~1K (cost model), for the rate


def scenario(regions: int, racks: int) -> dict:
    pool = {
        "service": "ranking",
        "model": "hc1",
        "platform": "mtia-2i-rack",
        "racks": racks,
        "batching": {"max_items": 1024, "max_wait_us": 1000},
    }
    return {
        "name": f"bench-{regions}x{racks}",
        "seed": 1,
        "report_interval_ms": 5,
        "metrics_interval_ms": 1000,
        "router": {"policy": "least_outstanding"},
        "regions": [{"name": f"r{i:02d}", "pools": [pool]} for i in range(regions)],
        "slo": {"ranking": {"p99_ms": 100}},
    }


def trace_table(regions: int, racks: int, n: int, utilization: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    accels = regions * racks * 72
    items = rng.choice(
        [100, 200, 300, 400, 500, 600, 700], n, p=[0.1, 0.6, 0.1, 0.05, 0.05, 0.05, 0.05]
    ).astype(np.int32)
    rate = utilization * accels * ITEMS_PER_S_PER_ACCEL / items.mean()
    arrival = np.cumsum(rng.exponential(1e9 / rate, n)).astype(np.int64)
    region = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, regions, n).astype(np.int32)),
        pa.array([f"r{i:02d}" for i in range(regions)]),
    )
    service = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["ranking"]))
    return pa.table(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "arrival_ns": arrival,
            "service": service,
            "region": region,
            "items": items,
            "input_tokens": pa.nulls(n, pa.int32()),
            "output_tokens": pa.nulls(n, pa.int32()),
        }
    )


class MemoryWatch(threading.Thread):
    """Peak total RSS of this process and every Ray/python process of this user."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb, self.stop = 0.0, False

    def run(self) -> None:
        while not self.stop:
            out = subprocess.run(
                ["ps", "-u", str(os.getuid()), "-o", "rss=,comm="], capture_output=True, text=True
            ).stdout
            total = sum(
                int(line.split()[0])
                for line in out.splitlines()
                if any(k in line for k in ("ray", "python", "gcs", "raylet"))
            )
            self.peak_mb = max(self.peak_mb, total / 1024)
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--regions", type=int, default=4)
    ap.add_argument("--racks", type=int, default=2)
    ap.add_argument("--requests", type=int, default=500_000)
    ap.add_argument("--utilization", type=float, default=0.7)
    ap.add_argument(
        "--shards", type=int, default=None, help="shard actors (default: one per region)"
    )
    ap.add_argument("--skip-inprocess", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    cfg = work / "scenario.yaml"
    cfg.write_text(yaml.safe_dump(scenario(args.regions, args.racks)))
    t0 = time.perf_counter()
    write_trace(
        trace_table(args.regions, args.racks, args.requests, args.utilization, 0),
        work / "trace.parquet",
        {"source": "bench_replay"},
    )
    print(
        f"machine: nproc={os.cpu_count()}; fleet {args.regions} regions x {args.racks} racks "
        f"= {args.regions * args.racks * 72:,} MTIA 2i; {args.requests:,} requests"
    )
    print(f"trace generation: {time.perf_counter() - t0:.2f} s")
    watch = MemoryWatch()
    watch.start()
    t0 = time.perf_counter()
    with ray_session(None, namespace="bench", num_cpus=os.cpu_count()):
        t_ray = time.perf_counter() - t0
        t0 = time.perf_counter()
        replay(cfg, work / "trace.parquet", work / "ray-run", ReplayOptions(shards=args.shards))
        t_replay = time.perf_counter() - t0
    watch.stop = True
    print(f"ray start: {t_ray:.2f} s")
    print(
        f"replay on Ray ({args.regions} region actors): {t_replay:.2f} s = "
        f"{args.requests / t_replay:,.0f} requests/s; peak memory (all processes) "
        f"{watch.peak_mb:,.0f} MB"
    )
    if not args.skip_inprocess:
        t0 = time.perf_counter()
        replay(cfg, work / "trace.parquet", work / "inproc-run", ReplayOptions(address="inprocess"))
        t_in = time.perf_counter() - t0
        ideal = t_in / min(os.cpu_count() or 1, args.regions)
        print(
            f"replay in one process (no Ray): {t_in:.2f} s = {args.requests / t_in:,.0f} requests/s"
        )
        print(
            f"Ray share estimate: 1 - (in-process time / cores) / Ray time = "
            f"{max(0.0, 1 - ideal / t_replay):.0%}"
        )


if __name__ == "__main__":
    main()
