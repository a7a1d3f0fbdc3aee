"""Wall time of the LLM capacity search per chip, against an older revision, in one run.

For each chip, runs `planning.capacity.capacity` (what `mtia-cluster capacity ... --address
inprocess` runs: one platform unit, Azure 2023 conversation lengths, the search's verdict)
in a fresh Python process for this tree and, with ``--baseline REV``, for the package as of
git revision REV (exported with ``git archive`` to a temporary directory), alternating
baseline and current per chip so both see the same machine load. Each process first runs a
tiny search, untimed: imports and Numba's compilation (cached on disk after a first run; an
exported tree has no cache yet). Prints seconds per chip, replays, the capacity found
(requests/s and output tokens/s per platform unit) and, with a baseline, how far the answer
moved (the search's tolerance is ``rel_tol``, 3%).

Usage::

    .venv/bin/python benchmarks/bench_capacity.py --baseline d458396
    .venv/bin/python benchmarks/bench_capacity.py --model llama-3.1-8b --chips h100,mtia-2i
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# run in the child: one capacity search, timed, printed as one JSON line
CHILD = """
import json, sys, time
from mtia_cluster.planning.capacity import capacity, parse_slo
model, chip, slo = sys.argv[1:4]
capacity("llama-3.1-8b", "h100", parse_slo(slo), requests=50, rel_tol=0.5)  # JIT, imports
t0 = time.perf_counter()
r = capacity(model, chip, parse_slo(slo))
print(json.dumps({"s": time.perf_counter() - t0, "rps": r.requests_per_s,
                  "tokens": r.work_per_s, "replays": r.replays,
                  "accel_w": r.accelerator_power_w}))
"""


def run_one(tree: Path, model: str, chip: str, slo: str) -> dict[str, float]:
    """One capacity search in a fresh process importing the package from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, chip, slo],
        env=env,
        cwd=tree,  # `-c` puts the working directory first on sys.path
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def export(rev: str, into: Path) -> Path:
    """The package (mtia_cluster/ and configs/) as of git revision `rev`, under `into`."""
    archive = into / "base.tar"
    with archive.open("wb") as f:
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "mtia_cluster", "configs"],
            stdout=f,
            check=True,
        )
    with tarfile.open(archive) as t:
        t.extractall(into, filter="data")
    return into


def row(chip: str, label: str, r: dict[str, float], ref: dict[str, float] | None) -> str:
    moved = f"{r['rps'] / ref['rps'] - 1:+.1%}" if ref else ""
    return (
        f"| {chip} | {label} | {r['s']:.1f} | {r['replays']:.0f} | {r['rps']:,.4g} | "
        f"{r['tokens']:,.0f} | {r['accel_w']:,.0f} | {moved} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-70b")
    ap.add_argument("--chips", default="h100,mtia-400")
    ap.add_argument("--slo", default="ttft_p99=2s,tpot_p99=100ms")
    ap.add_argument("--baseline", default=None, help="git revision to compare against")
    a = ap.parse_args()
    print(f"{a.model}, SLO {a.slo}, one platform unit, in-process (no Ray); 2 vCPU shared")
    print("| chip | tree | s | replays | req/s | tokens/s | accel W | moved |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        base = export(a.baseline, Path(tmp)) if a.baseline else None
        for chip in a.chips.split(","):
            ref = None
            if base is not None:
                ref = run_one(base, a.model, chip, a.slo)
                print(row(chip, a.baseline, ref, None), flush=True)
            print(row(chip, "this", run_one(ROOT, a.model, chip, a.slo), ref), flush=True)


if __name__ == "__main__":
    main()
