"""Fleet-scale speed (issue 18): 16 regions x 100 MTIA 2i racks (115,200 accelerators) of HC1
at 100k requests/s for a given simulated duration, i.e. a large fleet that is mostly idle.

Prints, in one run on the same machine (with the load average):

* the synthetic I/O floor: read the trace with pyarrow and write the same number of
  `requests/` rows (every column of the results schema, non-trace columns filled with
  ``np.arange``, pyarrow's default dictionary attempt on every column) as zstd Parquet;
* after `simulate -o`, the realistic floor (realistic_floor.py): read the trace and write the
  rows that run wrote (`requests/`, then `requests/` + `devices/`) with the product's
  settings, loaded into memory first, in one process and in two (half the regions each);
* `Simulation.run` alone (engine, nothing written) in a child process: requests/s and peak RSS;
* `mtia-cluster simulate -o` end to end: requests/s and peak RSS (child process);
* `mtia-cluster replay --shards 2` end to end on an embedded local Ray: requests/s and the peak
  RSS summed over the replay's process tree (driver, GCS, raylet, workers; sampled).

Every end-to-end figure includes process start, imports and loading the cached numba
kernels (a few seconds), so short runs understate the steady rate.

    .venv/bin/python benchmarks/bench_fleet.py --seconds 10 [--regions 16 --racks 100]
        [--rate 100000] [--skip-replay] [--skip-simulate] [--loaded]

`--loaded` adds `Simulation.run` timed after a short run in the same process: the engine's
own rate, without numba's per-process kernel loading (~0.6 s of CPU). To compare checkouts,
run this file from each (`cd CHECKOUT && PYTHONPATH=$PWD python /path/to/bench_fleet.py`):
it times whatever `mtia_cluster` the interpreter imports.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from mtia_cluster.results.schema import REQUEST_FILE_SCHEMA
from mtia_cluster.traces.io import write_trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine_rr import _cpu_model
from bench_replay import scenario
from bench_replay import trace_table as replay_trace
from realistic_floor import print_floors


def trace_table(regions: int, n: int, rate_per_s: float, seed: int) -> pa.Table:
    """bench_replay's trace (regions uniform, its item mix) with Poisson arrivals at
    `rate_per_s` instead of a rate derived from a utilization."""
    table = replay_trace(regions, 1, n, 0.5, seed)
    rng = np.random.default_rng(seed + 1)
    arrival = np.cumsum(rng.exponential(1e9 / rate_per_s, n)).astype(np.int64)
    return table.set_column(table.schema.get_field_index("arrival_ns"), "arrival_ns", [arrival])


def _generate(regions: int, n: int, rate: float, path: Path) -> None:
    write_trace(trace_table(regions, n, rate, 0), path, {"source": "bench_fleet"})


def io_floor(trace: Path, out: Path) -> float:
    """Seconds to read the trace and write as many `requests/` rows (full schema, zstd):
    the synthetic floor (``np.arange`` columns, dictionary attempted on every column; not
    the rows a run writes: see realistic_floor.py)."""
    t0 = time.perf_counter()
    src = pq.read_table(trace)
    n = src.num_rows
    cols: dict[str, Any] = {}
    for f in REQUEST_FILE_SCHEMA:
        if f.name in src.column_names and src.schema.field(f.name).type == f.type:
            cols[f.name] = src.column(f.name)
        elif pa.types.is_dictionary(f.type):
            cols[f.name] = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32)), pa.array(["x"])
            )
        elif pa.types.is_boolean(f.type):
            cols[f.name] = pa.array(np.ones(n, dtype=bool))
        else:
            cols[f.name] = pa.array(np.arange(n).astype(f.type.to_pandas_dtype()))
    pq.write_table(pa.table(cols, schema=REQUEST_FILE_SCHEMA), out, compression="zstd")
    return time.perf_counter() - t0


def _engine(cfg: Path, trace: Path, queue: Any, loaded: bool = False) -> None:
    from mtia_cluster.config.scenario import load_scenario
    from mtia_cluster.engine.simulation import Simulation
    from mtia_cluster.engine.trace_input import load_trace

    scn = load_scenario(cfg)
    rows = load_trace(trace, scn)
    if loaded:  # a short run first: the kernels are loaded before the timed run
        Simulation(scn).run(rows.take(slice(0, min(len(rows), 20_000))))
    sim = Simulation(scn)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    sim.run(rows)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    queue.put((wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, cpu))


def engine_only(cfg: Path, trace: Path, loaded: bool = False) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, CPU seconds) of Simulation.run in a fresh process
    (`loaded`: after a short run in that process, so numba's kernel loading is not timed)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_engine, args=(cfg, trace, queue, loaded))
    child.start()
    wall, rss_mb, cpu = queue.get()
    child.join()
    return wall, rss_mb, cpu


class TreeWatch(threading.Thread):
    """Peak RSS (MB) summed over process `root` and all its descendants (Ray's GCS, raylet
    and workers of an embedded local Ray included), sampled every `every_s` (0.2 s) from /proc, and
    CPU seconds each of them had used when last seen; `samples` keeps (seconds since the
    start, tree RSS MB) of every sample, to show the footprint through a run."""

    def __init__(self, root: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.every_s, self.peak_mb, self.stop = root, every_s, 0.0, False
        self.cpu_s: dict[int, float] = {}
        self.samples: list[tuple[float, float]] = []

    def run(self) -> None:
        page, t0 = os.sysconf("SC_PAGE_SIZE"), time.perf_counter()
        while not self.stop:
            parent, rss, cpu = {}, {}, {}
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                        stat = fh.read().rsplit(")", 1)[1].split()
                    parent[int(pid)] = int(stat[1])
                    cpu[int(pid)] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
                    with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                        rss[int(pid)] = int(fh.read().split()[1]) * page
                except (OSError, IndexError, ValueError):
                    continue
            tree, grew = {self.root}, True
            while grew:
                more = {p for p, pp in parent.items() if pp in tree} - tree
                tree |= more
                grew = bool(more)
            total_mb = sum(rss.get(p, 0) for p in tree) / 2**20
            self.peak_mb = max(self.peak_mb, total_mb)
            self.samples.append((time.perf_counter() - t0, total_mb))
            self.cpu_s.update({p: cpu[p] for p in tree if p in cpu})
            time.sleep(self.every_s)


def warm(work: Path) -> None:
    """A tiny run (one rack, 2,000 requests) in a fresh process, so that the kernels are
    compiled and cached (``cache=True``) before anything is timed."""
    cfg, trace = work / "warm.yaml", work / "warm.parquet"
    cfg.write_text(yaml.safe_dump(scenario(1, 1)))
    _generate(1, 2000, 1e5, trace)
    engine_only(cfg, trace)


def cli(args: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, CPU seconds of the process tree) of one `mtia-cluster`
    command (the CPU of descendants as last sampled, the root's exactly)."""
    wall, peak_mb, cpu_s, _ = cli_watched(args)
    return wall, peak_mb, cpu_s


def cli_watched(args: list[str]) -> tuple[float, float, float, TreeWatch]:
    """`cli`'s figures and the watcher, whose `samples` trace the tree's RSS."""
    exe = str(Path(sys.executable).parent / "mtia-cluster")
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, *args], stdout=subprocess.DEVNULL)
    watch = TreeWatch(proc.pid)
    watch.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    watch.stop = True
    if status != 0:
        raise SystemExit(f"mtia-cluster {' '.join(args)} failed ({status})")
    watch.cpu_s[proc.pid] = usage.ru_utime + usage.ru_stime
    cpu_s = sum(watch.cpu_s.values())
    return wall, max(watch.peak_mb, usage.ru_maxrss / 1024), cpu_s, watch


def replay_ray(cfg: Path, trace: Path, out: Path, shards: int) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB of the replay's process tree) of `replay` on local Ray."""
    args = ["replay", str(cfg), "--trace", str(trace), "-o", str(out), "--json"]
    return cli([*args, "--shards", str(shards), "--address", "local"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0, help="simulated seconds")
    ap.add_argument("--rate", type=float, default=100_000.0, help="requests per second")
    ap.add_argument("--regions", type=int, default=16)
    ap.add_argument("--racks", type=int, default=100, help="MTIA 2i racks per region")
    ap.add_argument("--shards", type=int, default=2, help="shard actors of the replay")
    ap.add_argument("--skip-simulate", action="store_true")
    ap.add_argument("--skip-replay", action="store_true")
    ap.add_argument(
        "--loaded",
        action="store_true",
        help="also time Simulation.run after a short run in the same process (kernels loaded)",
    )
    args = ap.parse_args()
    n = int(args.rate * args.seconds)
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    cfg, trace = work / "scenario.yaml", work / "trace.parquet"
    cfg.write_text(yaml.safe_dump(scenario(args.regions, args.racks)))
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_generate, args=(args.regions, n, args.rate, trace))
    child.start()
    child.join()
    print(
        f"machine: {os.cpu_count()} cpus, {_cpu_model()}; load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"fleet: {args.regions} regions x {args.racks} racks = "
        f"{args.regions * args.racks * 72:,} MTIA 2i; {args.rate:,.0f} requests/s for "
        f"{args.seconds} s simulated = {n:,} requests"
    )
    cpu0 = time.process_time()
    floor = io_floor(trace, work / "floor.parquet")
    floor_cpu = time.process_time() - cpu0
    label = "synthetic I/O floor (read trace, write np.arange request rows, zstd)"
    _line(label, n, floor, None, floor_cpu)
    warm(work)  # compiles the numba kernels if this checkout has no cache yet: not counted
    _line("Simulation.run (engine alone, nothing written)", n, *engine_only(cfg, trace))
    if args.loaded:
        label = "Simulation.run, kernels loaded (after a short run in the same process)"
        _line(label, n, *engine_only(cfg, trace, loaded=True))
    if not args.skip_simulate:
        sim = ["simulate", str(cfg), "--trace", str(trace), "-o", str(work / "sim"), "--json"]
        _line("simulate -o (end to end)", n, *cli(sim))
        print_floors(work / "sim", trace, n, [1, 2], devices=True)
    if not args.skip_replay:
        label = f"replay --shards {args.shards} (end to end, local Ray)"
        _line(label, n, *replay_ray(cfg, trace, work / "replay", args.shards))
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _line(label: str, n: int, wall: float, rss_mb: float | None, cpu_s: float) -> None:
    """One figure: wall rate, peak RSS and the rate per CPU-second (the machine is shared:
    wall/CPU > 1 means other load or waiting)."""
    rss = "" if rss_mb is None else f", peak RSS {rss_mb:,.0f} MB"
    print(
        f"{label}: {wall:.2f} s = {n / wall:,.0f} requests/s{rss}; CPU {cpu_s:.2f} s = "
        f"{n / cpu_s:,.0f} requests per CPU-second"
    )


if __name__ == "__main__":
    main()
