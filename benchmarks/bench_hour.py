"""One long `simulate -o` on the fleet of bench_fleet.py (issue 18: "one simulated hour at
100k requests/s, peak RSS < 8 GB"): wall time, CPU time, requests per second and the resident
memory of the process sampled through the run, so that a flat footprint can be seen.

The trace (bench_fleet.py's: regions uniform, bench_replay's item mix, Poisson arrivals at
`--rate`) is written in row groups of `--chunk` requests with a fixed seed per chunk, so a
360 M-request trace never sits in memory; it is reused if it already exists with the same
parameters (its name says them), or taken from `--trace` (a trace this script wrote with the
same parameters, e.g. in another `--work`). Output goes to `--work` (default a temporary
directory, removed afterwards unless `--keep`).

    .venv/bin/python benchmarks/bench_hour.py --seconds 3600 [--rate 100000] \
        [--regions 16 --racks 100] [--work DIR] [--trace PATH] [--keep]
        [--command replay --shards 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml
from bench_fleet import TreeWatch, cli_watched, scenario, trace_table


def write_trace(path: Path, regions: int, n: int, rate: float, chunk: int) -> None:
    """`n` requests in row groups of `chunk`, arrivals continuing across groups."""
    tmp = path.with_name(path.name + ".partial")
    writer = None
    start_ns, first_id = 0, 0
    try:
        for i, lo in enumerate(range(0, n, chunk)):
            table = trace_table(regions, min(chunk, n - lo), rate, seed=1000 + i)
            arrival = table.column("arrival_ns").to_numpy() + start_ns
            ids = np.arange(first_id, first_id + table.num_rows, dtype=np.int64)
            table = table.set_column(0, "request_id", [ids])
            table = table.set_column(1, "arrival_ns", [arrival])
            start_ns, first_id = int(arrival[-1]) + 1, first_id + table.num_rows
            if writer is None:
                meta = {b"mtia_cluster.trace": b'{"source": "bench_hour"}'}
                schema = table.schema.with_metadata(meta)
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
    tmp.rename(path)


def run(
    cfg: Path, trace: Path, out: Path, command: str = "simulate", shards: int = 2
) -> tuple[float, float, float, TreeWatch]:
    """(wall s, CPU s, peak RSS MB) of `mtia-cluster simulate -o` (or `replay --shards N` on
    an embedded local Ray: CPU and RSS of the whole process tree) and its RSS watcher."""
    args = [command, str(cfg), "--trace", str(trace), "-o", str(out), "--json"]
    if command == "replay":
        args += ["--shards", str(shards), "--address", "local"]
    wall, peak_mb, cpu_s, watch = cli_watched(args)
    return wall, cpu_s, peak_mb, watch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3600.0, help="simulated seconds")
    ap.add_argument("--rate", type=float, default=100_000.0, help="requests per second")
    ap.add_argument("--regions", type=int, default=16)
    ap.add_argument("--racks", type=int, default=100, help="MTIA 2i racks per region")
    ap.add_argument("--chunk", type=int, default=5_000_000, help="trace rows per row group")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the trace and the results")
    ap.add_argument(
        "--trace", type=Path, default=None, help="an existing trace of the same parameters"
    )
    ap.add_argument(
        "--command",
        choices=["simulate", "replay"],
        default="simulate",
        help="simulate -o (one process), or replay --shards N on an embedded local Ray",
    )
    ap.add_argument("--shards", type=int, default=2, help="shard actors of --command replay")
    args = ap.parse_args()
    n = int(args.seconds * args.rate)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_hour_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "scenario.yaml"
    cfg.write_text(yaml.safe_dump(scenario(args.regions, args.racks)))
    trace = args.trace or work / f"trace-{args.regions}r-{n}-{int(args.rate)}.parquet"
    if args.trace is not None and pq.ParquetFile(trace).metadata.num_rows != n:
        raise SystemExit(f"{trace} does not hold {n:,} requests")
    t0 = time.perf_counter()
    if not trace.exists():
        write_trace(trace, args.regions, n, args.rate, args.chunk)
    print(
        f"trace: {n:,} requests, {trace.stat().st_size / 2**30:.2f} GiB, "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    out = work / "results"
    load0 = os.getloadavg()[0]
    wall, cpu, peak, watch = run(cfg, trace, out, args.command, args.shards)
    load1 = os.getloadavg()[0]
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**30
    label = "simulate -o" if args.command == "simulate" else f"replay --shards {args.shards}"
    print(
        f"{label}: {n:,} requests ({args.seconds:g} s simulated, {args.regions} x "
        f"{args.racks} racks) in {wall:.1f} s wall = {n / wall:,.0f} requests/s; "
        f"{cpu:.1f} CPU-s = {n / cpu:,.0f} per CPU-s; peak RSS {peak:,.0f} MB; "
        f"results {size:.2f} GiB; load average {load0:.1f} -> {load1:.1f}"
    )
    tenth = max(1, len(watch.samples) // 10)
    print(
        "RSS through the run (s: MB): "
        + ", ".join(f"{t:.0f}: {m:,.0f}" for t, m in watch.samples[::tenth])
    )
    if not args.keep:
        shutil.rmtree(work) if args.work is None else shutil.rmtree(out)


if __name__ == "__main__":
    sys.exit(main())
