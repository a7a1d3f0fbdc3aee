"""Output path at fleet scale (issue 18 items 2-3): `simulate -o` end to end, peak RSS against
simulated duration, and the I/O floor, in one run.

Sparse (default): bench_fleet.py's fleet and trace (16 regions x 100 MTIA 2i racks, HC1,
100k requests/s Poisson: a large, mostly idle fleet that writes as many `devices/` rows as
requests). Dense (``--dense``): 16 regions x 10 racks of the same pool at ~70% utilization
(bench_replay.py's trace), 10 M requests in ~1.1 s simulated: requests dominate the output.
For each case the trace is generated once; then the synthetic I/O floor (read the trace,
write as many `requests/` rows with pyarrow, zstd, ``np.arange`` in every non-trace column)
and `mtia-cluster simulate -o` for each checkout given,
alternating checkouts on every repetition (the machine is shared: compare figures of the
same repetition). A checkout is a source tree put first on PYTHONPATH (default: this one),
e.g. ``--checkout /work/main --checkout .`` for before/after. Older checkouts refuse sparse
runs longer than ~85 s simulated (their `device_intervals` limit, docs/limits.md), so the
benchmark raises it for them (MTIA_CLUSTER_LIMITS). After the first repetition, the
realistic floor (realistic_floor.py: read the trace and write the rows that `simulate -o`
wrote, with the product's settings, in one process and in two) unless ``--no-realistic``.

    .venv/bin/python benchmarks/bench_output.py --seconds 60 180 [--reps 1]
        [--checkout DIR ...] [--rate 100000] [--regions 16 --racks 100]
    .venv/bin/python benchmarks/bench_output.py --dense [--requests 10000000]
    .venv/bin/python benchmarks/bench_output.py --stats 10000000 [--checkout DIR ...] [--bounded]

``--stats N``: only the exact statistics' memory (bytes per request kept while writing and
the peak of finalizing them), counted by tracemalloc on synthetic rows: no timing; and the
resident memory (RSS, sampled every 5 ms) before and during finalize, which also counts
freed memory the process has not given back to the OS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine_rr import _cpu_model
from bench_fleet import TreeWatch, _generate, cli, io_floor, scenario
from bench_replay import trace_table as dense_table
from realistic_floor import print_floors

from mtia_cluster.traces.io import write_trace

ROOT = Path(__file__).resolve().parents[1]


def simulate(
    checkout: Path, cfg: Path, trace: Path, out: Path, keep: bool = False
) -> tuple[float, float, float]:
    """(wall s, peak RSS MB, CPU s) of `simulate -o` with `checkout` first on PYTHONPATH
    (`keep`: leave the results directory `out`)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(checkout)
    os.environ.setdefault("MTIA_CLUSTER_LIMITS", "device_intervals=1000000000")
    try:
        return cli(["simulate", str(cfg), "--trace", str(trace), "-o", str(out), "--json"])
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def measure(
    label: str, n: int, make: Callable[[Path], None], cfg: Path, args: argparse.Namespace
) -> None:
    """Generate the trace, time the I/O floor, then `simulate -o` per checkout and rep."""
    work = cfg.parent
    trace = work / "trace.parquet"
    make(trace)
    cpu0 = time.process_time()
    floor = n / io_floor(trace, work / "floor.parquet")
    floor_cpu = n / (time.process_time() - cpu0)
    (work / "floor.parquet").unlink()
    print(
        f"{label}, {n:,} requests; load {os.getloadavg()[0]:.1f}; synthetic I/O floor "
        f"{floor:,.0f} rows/s, {floor_cpu:,.0f} rows per CPU-second"
    )
    for rep in range(args.reps):
        for checkout in args.checkouts:
            keep = rep == 0 and checkout == args.checkouts[-1] and args.realistic
            wall, rss, cpu = simulate(checkout, cfg, trace, work / "out", keep)
            print(
                f"  rep {rep + 1} {checkout}: simulate -o {wall:.1f} s = {n / wall:,.0f} "
                f"requests/s = {n / wall / floor:.2f}x the floor; peak RSS {rss:,.0f} MB; "
                f"CPU {cpu:.1f} s = {n / cpu:,.0f} requests per CPU-second; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if keep:
                print_floors(work / "out", trace, n, [1, 2], devices=True)
                shutil.rmtree(work / "out")
    trace.unlink()


def stats_memory(n: int, regions: int, rate: float, bounded: bool = False) -> None:
    """Print the bytes per request the exact statistics keep while a run writes `n` requests
    and the peak while finalize turns them into summary.json and `regions/`: numpy's
    allocations as tracemalloc counts them (deterministic, unlike RSS on a shared machine).
    Synthetic R&R rows (one service, ok, latencies 1-50 ms), fed as a writer feeds them.
    `bounded`: the shard writer's statistics (histograms, no values; checkouts from issue
    18's bounded quantiles on): only what they keep and their `result()` (their finalize
    reads the written rows back: bench_hour.py measures it end to end)."""
    import tracemalloc

    import numpy as np
    import pyarrow as pa

    from mtia_cluster.engine.cell import Completed
    from mtia_cluster.results.convert import (
        completed_by_region,
        completed_to_table,
        request_file_table,
    )
    from mtia_cluster.results.derive import derive_from_stats
    from mtia_cluster.results.partials import StatsBuilder, merge_stats
    from mtia_cluster.results.verdict import VerdictRules
    from mtia_cluster.slo import ServiceSLO

    names = tuple(f"r{i:02d}" for i in range(regions))
    slos = {"ranking": ServiceSLO(latency_ns=100_000_000)}  # the benchmark scenario's SLO
    builder = StatsBuilder(
        ("ranking",), slos, 1_000_000_000, **({"bounded": True} if bounded else {})
    )
    rng = np.random.default_rng(0)
    tracemalloc.start()
    base, last = tracemalloc.get_traced_memory()[0], 0.0
    piece = 131_072
    for lo in range(0, n, piece):
        m = min(piece, n - lo)
        arrival = (last + np.cumsum(rng.exponential(1e9 / rate, m))).astype(np.int64)
        last = float(arrival[-1])
        finish = arrival + rng.integers(1_000_000, 50_000_000, m)
        zeros, zeros64 = np.zeros(m, np.int32), np.zeros(m, np.int64)
        region = rng.integers(0, regions, m).astype(np.int32)
        rows = Completed(
            cached_tokens=zeros64,
            spill_rtt_ns=zeros64,
            preemptions=zeros,
            origin_region=region,
            **{k: zeros for k in ("service", "host_id", "accelerator_id", "batch_size")},
            **{k: zeros for k in ("input_tokens", "output_tokens", "items")},
            request_id=np.arange(lo, lo + m, dtype=np.int64),
            region=region,
            arrival_ns=arrival,
            start_ns=arrival,
            first_token_ns=finish,
            finish_ns=finish,
            status=np.zeros(m, np.int8),
        )
        for r, mine in completed_by_region(rows):
            table = completed_to_table(mine, services=("ranking",), regions=names, slos=slos)
            builder.add(names[r], request_file_table(table))
    # the rows still buffered per region (older checkouts: as their result() takes them), so
    # what is counted is what grows with the run
    if hasattr(builder, "flush"):
        builder.flush()
    else:
        for r in list(builder._pending):
            builder._add(r, pa.concat_tables(builder._pending.pop(r)))
    kept = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    rss = TreeWatch(os.getpid(), every_s=0.005)  # what the OS sees: freed but kept pages too
    rss.start()
    time.sleep(0.05)
    stats = merge_stats([builder.result()])
    if bounded:
        top = tracemalloc.get_traced_memory()[1] - base
        rss.stop = True
        print(
            f"  bounded statistics of {n:,} requests: kept while writing {kept / 1e6:,.1f} MB = "
            f"{kept / n:.2f} B per request; result() peak {top / 1e6:,.1f} MB",
            flush=True,
        )
        return
    common = {"services": ("ranking",), "regions": names, "slos": slos}
    derive_from_stats(
        stats, None, **common, rules=VerdictRules(), interval_ns=1_000_000_000, span_ns=None
    )
    peak = tracemalloc.get_traced_memory()[1] - base
    rss.stop = True
    rss.join()
    before, top = rss.samples[0][1], max(m for _, m in rss.samples)
    print(
        f"  statistics of {n:,} requests: kept while writing {kept / 1e6:,.0f} MB = "
        f"{kept / n:.1f} B per request; finalize peak {peak / 1e6:,.0f} MB "
        f"({(peak - kept) / 1e6:+,.0f} MB); RSS {before:,.0f} MB before finalize, "
        f"peak {top:,.0f} MB ({(top - before) * 2**20 / n:+.1f} B per request)",
        flush=True,
    )


def stats_per_checkout(args: argparse.Namespace) -> None:
    """`stats_memory` in a child process per checkout (its modules first on the path)."""
    import subprocess

    for checkout in args.checkouts:
        print(f"{checkout}:", flush=True)
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        cmd = [sys.executable, __file__, "--stats-child", str(args.stats), "--rate", "100000"]
        cmd += ["--bounded"] if args.bounded else []
        subprocess.run([*cmd, "--regions", str(args.regions)], env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, nargs="+", default=[60.0, 180.0])
    ap.add_argument("--rate", type=float, default=100_000.0)
    ap.add_argument("--regions", type=int, default=16)
    ap.add_argument("--racks", type=int, default=None, help="default: 100 (sparse), 10 (dense)")
    ap.add_argument("--dense", action="store_true", help="~70%% utilization, --requests rows")
    ap.add_argument("--requests", type=int, default=10_000_000, help="dense mode's trace rows")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--checkout", type=Path, action="append", default=None)
    ap.add_argument(
        "--no-realistic", dest="realistic", action="store_false", help="skip the realistic floor"
    )
    ap.add_argument("--stats", type=int, default=0, help="only the statistics' memory, N rows")
    ap.add_argument("--stats-child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--bounded", action="store_true", help="--stats: the shard writer's kind")
    args = ap.parse_args()
    args.checkouts = [c.resolve() for c in (args.checkout or [ROOT])]
    if args.stats_child:
        return stats_memory(args.stats_child, args.regions, args.rate, args.bounded)
    if args.stats:
        return stats_per_checkout(args)
    racks = args.racks or (10 if args.dense else 100)
    work = Path(tempfile.mkdtemp(prefix="bench-output-"))
    cfg = work / "scenario.yaml"
    cfg.write_text(yaml.safe_dump(scenario(args.regions, racks)))
    print(f"machine: {os.cpu_count()} cpus, {_cpu_model()}")
    try:
        if args.dense:
            n = args.requests

            def make(path: Path) -> None:
                table = dense_table(args.regions, racks, n, 0.7, 0)
                write_trace(table, path, {"source": "bench_output"})

            measure(f"dense: {args.regions} x {racks} racks at ~0.7", n, make, cfg, args)
            return
        for seconds in args.seconds:
            n = int(args.rate * seconds)

            def make_sparse(path: Path, n: int = n) -> None:
                _generate(args.regions, n, args.rate, path)

            label = f"sparse: {args.regions} x {racks} racks, {seconds:g} s simulated"
            measure(label, n, make_sparse, cfg, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
