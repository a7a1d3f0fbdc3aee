"""`replay --shards N` end to end (local Ray) on bench_fleet.py's fleet, from several checkouts
alternately in one run: before/after figures on a shared machine.

Each run is the `mtia-cluster replay ... --address local` command in a fresh process tree,
started **from the checkout's directory** with ``PYTHONPATH`` set to it: Ray workers of an
embedded cluster put the driver's working directory first on their ``sys.path``, so a run
started elsewhere would execute the shard actors from that other directory's code. Prints, per
run, wall seconds, the process tree's CPU seconds and peak RSS (bench_fleet.py's `TreeWatch`),
the load average and the results' digest (SHA-256 of every Parquet file, by path, and of
summary.json: equal digests = byte-identical results); `--simulate` adds `simulate -o` from
the last checkout as a reference.
A tiny replay per checkout first compiles and caches its numba kernels (not timed).

    .venv/bin/python benchmarks/bench_replay_checkouts.py --checkout /tmp/before \
        --checkout . --seconds 60 10 --rounds 2 [--shards 2] [--simulate]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fleet import _generate, _line, cli, replay_ray, scenario


def _use(checkout: Path) -> None:
    """Run the next commands from `checkout` (its code in the driver and the actors)."""
    os.environ["PYTHONPATH"] = str(checkout)
    os.chdir(checkout)


def digest(run: Path) -> str:
    """SHA-256 over every Parquet file (relative path and bytes, in path order) and
    summary.json of a results directory (the manifest holds the run's id and wall time)."""
    h = hashlib.sha256()
    for path in sorted([*run.rglob("*.parquet"), run / "summary.json"]):
        h.update(str(path.relative_to(run)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkout", type=Path, action="append", required=True)
    ap.add_argument("--seconds", type=float, nargs="+", default=[60.0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rate", type=float, default=100_000.0)
    ap.add_argument("--simulate", action="store_true", help="also simulate -o (last checkout)")
    args = ap.parse_args()
    checkouts = [c.resolve() for c in args.checkout]
    work = Path(tempfile.mkdtemp(prefix="bench-replay-checkouts-"))
    cfg, small = work / "scenario.yaml", work / "small.yaml"
    cfg.write_text(yaml.safe_dump(scenario(16, 100)))
    small.write_text(yaml.safe_dump(scenario(2, 1)))
    _generate(2, 2000, args.rate, work / "small.parquet")
    for i, c in enumerate(checkouts):
        _use(c)
        replay_ray(small, work / "small.parquet", work / f"warm-{i}", args.shards)
    for secs in args.seconds:
        n = int(secs * args.rate)
        trace = work / f"trace-{secs:g}.parquet"
        _generate(16, n, args.rate, trace)
        for r in range(args.rounds):
            for i, c in enumerate(checkouts):
                _use(c)
                load, t = os.getloadavg()[0], time.strftime("%H:%M:%S", time.gmtime())
                run = work / f"run-{secs:g}-{r}-{i}"
                res = replay_ray(cfg, trace, run, args.shards)
                label = f"{t} {secs:g} s, round {r + 1}, {c}: replay --shards {args.shards}"
                load_end = os.getloadavg()[0]
                _line(f"{label} (load {load:.1f} -> {load_end:.1f}, digest {digest(run)})", n, *res)
        if args.simulate:
            sim = ["simulate", str(cfg), "--trace", str(trace), "-o", str(work / f"sim-{secs:g}")]
            load = os.getloadavg()[0]
            label = f"{secs:g} s, {checkouts[-1]}: simulate -o (load {load:.1f})"
            _line(label, n, *cli([*sim, "--json"]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
