"""Output path at fleet scale (issue 18 items 2-3): `simulate -o` end to end, peak RSS against
simulated duration, and the I/O floor, in one run.

The fleet and trace are bench_fleet.py's (16 regions x 100 MTIA 2i racks, HC1, 100k
requests/s Poisson). For each duration the trace is generated once; then the I/O floor (read
the trace, write as many `requests/` rows with pyarrow, zstd) and `mtia-cluster simulate -o`
for each checkout given, alternating checkouts on every repetition (the machine is shared:
compare figures of the same repetition). A checkout is a source tree put first on
PYTHONPATH (default: this one), e.g. ``--checkout /work/main --checkout .`` for before/after.
Runs longer than ~85 s simulated exceed the default `device_intervals` limit (docs/limits.md:
115,200 accelerators x 1 s intervals), so the benchmark raises it (MTIA_CLUSTER_LIMITS).

    .venv/bin/python benchmarks/bench_output.py --seconds 60 180 [--reps 1]
        [--checkout DIR ...] [--rate 100000] [--regions 16 --racks 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine_rr import _cpu_model
from bench_fleet import _generate, cli, io_floor, scenario

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, nargs="+", default=[60.0, 180.0])
    ap.add_argument("--rate", type=float, default=100_000.0)
    ap.add_argument("--regions", type=int, default=16)
    ap.add_argument("--racks", type=int, default=100)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--checkout", type=Path, action="append", default=None)
    args = ap.parse_args()
    checkouts = [c.resolve() for c in (args.checkout or [ROOT])]
    work = Path(tempfile.mkdtemp(prefix="bench-output-"))
    cfg = work / "scenario.yaml"
    cfg.write_text(yaml.safe_dump(scenario(args.regions, args.racks)))
    print(f"machine: {os.cpu_count()} cpus, {_cpu_model()}")
    for seconds in args.seconds:
        n = int(args.rate * seconds)
        trace = work / f"trace-{seconds:g}.parquet"
        _generate(args.regions, n, args.rate, trace)
        floor = io_floor(trace, work / "floor.parquet")
        print(
            f"{seconds:g} s simulated, {n:,} requests; load {os.getloadavg()[0]:.1f}; "
            f"I/O floor {n / floor:,.0f} rows/s"
        )
        for rep in range(args.reps):
            for checkout in checkouts:
                wall, rss, cpu = simulate(checkout, cfg, trace, work / "out")
                print(
                    f"  rep {rep + 1} {checkout}: simulate -o {wall:.1f} s = {n / wall:,.0f} "
                    f"requests/s; peak RSS {rss:,.0f} MB; CPU {cpu:.1f} s = {n / cpu:,.0f} "
                    f"requests per CPU-second; load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        trace.unlink()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
