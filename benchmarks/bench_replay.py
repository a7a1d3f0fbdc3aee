"""Replay speed on Ray: R regions x K MTIA 2i racks of HC1 at ~70% utilization.

Prints: trace generation, Ray start, replay wall time on local Ray with where it went (the
coordinator's phases and each shard's), the same replay in one process without Ray (same
results directory written), requests per second, the Ray share estimate and the peak memory
of all processes and of the coordinator. `--engine-only` adds Simulation.run alone (nothing
written) as a second baseline. Compare in one run: this machine is small and noisy.

    .venv/bin/python benchmarks/bench_replay.py --regions 16 --racks 10 --requests 10000000 \
        --shards 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from mtia_cluster.config.scenario import load_scenario, parse_scenario
from mtia_cluster.distributed.ray_env import ray_session
from mtia_cluster.distributed.runner import ReplayOptions, prepare, replay
from mtia_cluster.distributed.timing import Timeline, breakdown, ray_costs
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
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
    """Peak total RSS of every Ray/python process of this user, and of this process alone."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb, self.self_peak_mb, self.stop = 0.0, 0.0, False

    def run(self) -> None:
        me = str(os.getpid())
        while not self.stop:
            out = subprocess.run(
                ["ps", "-u", str(os.getuid()), "-o", "pid=,rss=,comm="],
                capture_output=True,
                text=True,
            ).stdout
            total = 0
            for line in out.splitlines():
                pid, rss, *comm = line.split()
                if any(k in " ".join(comm) for k in ("ray", "python", "gcs", "raylet")):
                    total += int(rss)
                if pid == me:
                    self.self_peak_mb = max(self.self_peak_mb, int(rss) / 1024)
            self.peak_mb = max(self.peak_mb, total / 1024)
            time.sleep(0.2)


def timed_replay(cfg: Path, trace: Path, out: Path, opt: ReplayOptions) -> tuple[float, Timeline]:
    """Wall seconds of one replay and its spans; prints where they went."""
    opt.timeline = Timeline()
    t0 = time.perf_counter()
    replay(cfg, trace, out, opt)
    wall = time.perf_counter() - t0
    for line in breakdown(opt.timeline):
        print("    " + line)
    return wall, opt.timeline


def print_ray_costs(tl: Timeline, wall_s: float) -> None:
    """Ray's own part of the Ray replay's wall time, measured from the spans
    (distributed/timing.py:ray_costs): the direct measure, next to the strict one."""
    c = ray_costs(tl)
    per = ", ".join(f"{x:.2f}" for x in c.startup_per_process_s)
    print(f"Ray's own costs on the critical path ({c.rounds} rounds of calls):")
    print(f"    sending calls (args, scheduling)      {c.send_s:7.2f} s")
    print(f"    returning replies (incl. statistics)  {c.reply_s:7.2f} s")
    print(f"    rounds without shard spans            {c.unmatched_s:7.2f} s")
    print(
        f"    = calls and transfers {c.calls_s:.2f} s = {c.calls_s / wall_s:.1%} of the Ray replay"
    )
    print(
        f"    actor start-up waited for {c.startup_exposed_s:.2f} s (process start {per} s, "
        f"mostly hidden behind the trace check; not paid by replay --fleet): with it "
        f"{(c.calls_s + c.startup_exposed_s) / wall_s:.1%}"
    )
    print(
        f"  not Ray: barrier wait (shards' imbalance) {c.barrier_s:.2f} s, shard construction "
        f"(cells, trace slice) waited for {c.init_wait_s:.2f} s"
    )


def engine_only(cfg: Path, trace: Path) -> float:
    """Simulation.run over the whole trace in this process: no results files written."""
    t0 = time.perf_counter()
    scenario = load_scenario(cfg)
    sim = Simulation(scenario)
    sim.run(load_trace(trace, scenario))
    return time.perf_counter() - t0


def warm_up() -> float:
    """Run a tiny replay in a child process so the engine's numba kernels are compiled and
    cached (``cache=True``) before anything is timed; returns its seconds. Every process
    still loads the cached kernels at its first call (part of the shards' figures)."""
    t0 = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=_tiny_run)
    child.start()
    child.join()
    return time.perf_counter() - t0


def _tiny_run() -> None:
    sim = Simulation(parse_scenario(scenario(2, 1), None))
    table = trace_table(2, 1, 20_000, 0.7, 1)
    with tempfile.TemporaryDirectory() as tmp:
        write_trace(table, Path(tmp) / "t.parquet", {"source": "warm-up"})
        sim.run(load_trace(Path(tmp) / "t.parquet", sim.scenario))


def coordinator_memory(cfg: Path, trace: Path, shards: int | None) -> tuple[float, float]:
    """Peak RSS (MB) of a fresh process preparing the replay: (streaming check as replay
    does now, reading the whole trace as the coordinator did before)."""
    ctx = multiprocessing.get_context("spawn")
    out = []
    for whole in (False, True):
        queue = ctx.Queue()
        child = ctx.Process(target=_prepare_peak, args=(cfg, trace, shards, whole, queue))
        child.start()
        out.append(queue.get())
        child.join()
    return out[0], out[1]


def _prepare_peak(cfg: Path, trace: Path, shards: int | None, whole: bool, queue: Any) -> None:
    if whole:  # what prepare() did before: load, assign regions, split served/rejected
        sim = Simulation(load_scenario(cfg))
        rows = sim.plane.assign_regions(load_trace(trace, sim.scenario))
        served = sim.plane.served(rows)
        rows.take(~served), rows.take(served)
    else:
        prepare(cfg, trace, ReplayOptions(shards=shards))
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def generate(args: argparse.Namespace, path: Path) -> None:
    """Write the trace in a child process, so this process's peak memory is the replay's."""
    table = trace_table(args.regions, args.racks, args.requests, args.utilization, 0)
    write_trace(table, path, {"source": "bench_replay"})


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
    ap.add_argument(
        "--inprocess-shards",
        type=int,
        default=1,
        help="shards of the in-process baseline (1: one worker owns every region)",
    )
    ap.add_argument(
        "--engine-only",
        action="store_true",
        help="also time Simulation.run in one process (no results written)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    cfg = work / "scenario.yaml"
    cfg.write_text(yaml.safe_dump(scenario(args.regions, args.racks)))
    trace = work / "trace.parquet"
    t0 = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=generate, args=(args, trace))
    child.start()
    child.join()
    print(
        f"machine: nproc={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; fleet "
        f"{args.regions} regions x {args.racks} racks = {args.regions * args.racks * 72:,} "
        f"MTIA 2i; {args.requests:,} requests"
    )
    print(f"trace generation: {time.perf_counter() - t0:.2f} s ({trace.stat().st_size >> 20} MB)")
    print(f"numba kernels compiled/cached by a tiny replay: {warm_up():.2f} s (not counted)")
    now_mb, before_mb = coordinator_memory(cfg, trace, args.shards)
    print(
        f"coordinator peak while preparing: {now_mb:,.0f} MB streaming check "
        f"(reading the whole trace, as before: {before_mb:,.0f} MB)"
    )
    watch = MemoryWatch()
    watch.start()
    t0 = time.perf_counter()
    shards = args.shards or args.regions
    with ray_session(None, namespace="bench", num_cpus=os.cpu_count()):
        t_ray = time.perf_counter() - t0
        print(f"ray start: {t_ray:.2f} s")
        print(f"replay on Ray ({shards} shard actors):")
        t_replay, tl_ray = timed_replay(
            cfg, trace, work / "ray-run", ReplayOptions(shards=args.shards)
        )
    watch.stop = True
    print(
        f"replay on Ray: {t_replay:.2f} s = {args.requests / t_replay:,.0f} requests/s; "
        f"peak memory: all processes {watch.peak_mb:,.0f} MB, coordinator "
        f"{watch.self_peak_mb:,.0f} MB (ru_maxrss so far "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB)"
    )
    print_ray_costs(tl_ray, t_replay)
    cores = min(os.cpu_count() or 1, shards)
    if not args.skip_inprocess:
        print(f"replay in one process, no Ray, {args.inprocess_shards} shard(s), same results:")
        opt = ReplayOptions(address="inprocess", shards=args.inprocess_shards)
        t_in, _ = timed_replay(cfg, trace, work / "inproc-run", opt)
        print(f"replay in one process: {t_in:.2f} s = {args.requests / t_in:,.0f} requests/s")
        print(
            f"strict Ray share (results written by both; includes duplicate trace decoding, "
            f"contention, serial work) = 1 - (in-process / {cores} cores) / Ray = "
            f"{1 - t_in / cores / t_replay:.1%}"
        )
    if args.engine_only:
        t_eng = engine_only(cfg, trace)
        print(f"Simulation.run in one process (no results written): {t_eng:.2f} s")
        print(
            f"Ray share against the engine alone = 1 - (engine / {cores} cores) / Ray = "
            f"{1 - t_eng / cores / t_replay:.1%}"
        )


if __name__ == "__main__":
    main()
