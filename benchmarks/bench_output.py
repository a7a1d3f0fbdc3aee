"""Output path at fleet scale (issue 18 items 2-3): `simulate -o` end to end, peak RSS against
simulated duration, and the I/O floor, in one run.

Sparse (default): bench_fleet.py's fleet and trace (16 regions x 100 MTIA 2i racks, HC1,
100k requests/s Poisson: a large, mostly idle fleet that writes as many `devices/` rows as
requests). Dense (``--dense``): 16 regions x 10 racks of the same pool at ~70% utilization
(bench_replay.py's trace), 10 M requests in ~1.1 s simulated: requests dominate the output.
For each case the trace is generated once; then the I/O floor (read the trace, write as many
`requests/` rows with pyarrow, zstd) and `mtia-cluster simulate -o` for each checkout given,
alternating checkouts on every repetition (the machine is shared: compare figures of the
same repetition). A checkout is a source tree put first on PYTHONPATH (default: this one),
e.g. ``--checkout /work/main --checkout .`` for before/after. Older checkouts refuse sparse
runs longer than ~85 s simulated (their `device_intervals` limit, docs/limits.md), so the
benchmark raises it for them (MTIA_CLUSTER_LIMITS).

    .venv/bin/python benchmarks/bench_output.py --seconds 60 180 [--reps 1]
        [--checkout DIR ...] [--rate 100000] [--regions 16 --racks 100]
    .venv/bin/python benchmarks/bench_output.py --dense [--requests 10000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine_rr import _cpu_model
from bench_fleet import _generate, cli, io_floor, scenario
from bench_replay import trace_table as dense_table

from mtia_cluster.traces.io import write_trace

ROOT = Path(__file__).resolve().parents[1]


def simulate(checkout: Path, cfg: Path, trace: Path, out: Path) -> tuple[float, float, float]:
    """(wall s, peak RSS MB, CPU s) of `simulate -o` with `checkout` first on PYTHONPATH."""
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
        shutil.rmtree(out, ignore_errors=True)


def measure(
    label: str, n: int, make: Callable[[Path], None], cfg: Path, args: argparse.Namespace
) -> None:
    """Generate the trace, time the I/O floor, then `simulate -o` per checkout and rep."""
    work = cfg.parent
    trace = work / "trace.parquet"
    make(trace)
    floor = n / io_floor(trace, work / "floor.parquet")
    (work / "floor.parquet").unlink()
    print(f"{label}, {n:,} requests; load {os.getloadavg()[0]:.1f}; I/O floor {floor:,.0f} rows/s")
    for rep in range(args.reps):
        for checkout in args.checkouts:
            wall, rss, cpu = simulate(checkout, cfg, trace, work / "out")
            print(
                f"  rep {rep + 1} {checkout}: simulate -o {wall:.1f} s = {n / wall:,.0f} "
                f"requests/s = {n / wall / floor:.2f}x the floor; peak RSS {rss:,.0f} MB; "
                f"CPU {cpu:.1f} s = {n / cpu:,.0f} requests per CPU-second; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    trace.unlink()


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
    args = ap.parse_args()
    args.checkouts = [c.resolve() for c in (args.checkout or [ROOT])]
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
