"""Wall time of the rollout timeline simulation (capacity excluded: cost-model cohorts).

Runs the shipped 16-region plan (optionally with seeded failures) and prints region-steps per
second of the timeline and of writing the outputs::

    .venv/bin/python benchmarks/bench_rollout.py
    .venv/bin/python benchmarks/bench_rollout.py --failures --repeat 3
    .venv/bin/python benchmarks/bench_rollout.py --failures --parts   # + host/accelerator
    .venv/bin/python benchmarks/bench_rollout.py --replays            # + exact replays, N-1 drills
    .venv/bin/python benchmarks/bench_rollout.py --replays --no-drill # exact replays only
    .venv/bin/python benchmarks/bench_rollout.py --outages            # + drawn region outages
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config import load_yaml
from mtia_cluster.rollout.plan import Plan, parse_plan
from mtia_cluster.rollout.run import cohorts_for, rollout_summary, run_rollout, write_outputs
from mtia_cluster.rollout.timeline import run_timeline

PLAN = Path(__file__).resolve().parent.parent / "configs" / "rollouts" / "mtia2i-16-regions.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--failures", action="store_true", help="add MTBF 2000 h / MTTR 24 h")
    ap.add_argument("--parts", action="store_true", help="add host/accelerator failures")
    ap.add_argument("--replays", action="store_true", help="time the exact replays too")
    ap.add_argument("--outages", action="store_true", help="add region MTBF 2000 h / MTTR 6 h")
    ap.add_argument("--no-drill", action="store_true", help="drop the plan's replay.drill")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    data = load_yaml(PLAN)
    if args.failures:
        data["failures"] = {"mtbf_h": 2000, "mttr_h": 24, "seed": 1}
    if args.parts:
        data.setdefault("failures", {"seed": 1})["parts"] = [
            {"part": "host", "mtbf_h": 20000, "mttr_h": 8},
            {"part": "accelerator", "mtbf_h": 50000, "mttr_h": 48},
        ]
    if args.outages:
        data.setdefault("failures", {"seed": 1})["region"] = {"mtbf_h": 2000, "mttr_h": 6}
    if args.no_drill:
        data.get("replay", {}).pop("drill", None)
    cat = load_catalog()
    plan = parse_plan(data, PLAN, cat)
    cohorts = cohorts_for(plan, cat, "fast")
    if args.replays:
        _bench_replays(plan, args.repeat)
        return
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = run_timeline(plan, cohorts)
        t1 = time.perf_counter()
        summary = rollout_summary(plan, res, "fast")
        with tempfile.TemporaryDirectory() as tmp:
            write_outputs(Path(tmp) / "out", res, summary)
        t2 = time.perf_counter()
        rows = len(res.timeline["time_ns"])
        print(
            f"{plan.name}: {rows} region-steps, {len(res.events)} events; timeline "
            f"{t1 - t0:.2f} s ({rows / (t1 - t0):,.0f} region-steps/s); "
            f"summary+write {t2 - t1:.2f} s; region outages {summary['outages']['count']}"
        )


def _bench_replays(plan: Plan, repeat: int) -> None:
    """Timeline with exact replays (cost-model capacity, so only the replays are timed)."""
    for _ in range(repeat):
        t0 = time.perf_counter()
        res, summary = run_rollout(plan.__class__(**{**vars(plan), "capacity_mode": "fast"}))
        dt = time.perf_counter() - t0
        n = sum(r.get("requests") or 0 for r in res.replays)
        moments = {r["time_ns"]: r for r in res.replays}  # a moment replayed once
        drilled = sum(r.get("drill_requests") or 0 for r in moments.values())
        print(
            f"{plan.name}: timeline + {len(res.replays)} replay rows "
            f"({len(moments)} distinct moments, {n:,} requests replayed, {drilled:,} in "
            f"N-1 drills) {dt:.2f} s; {summary['replay_disagreements']} disagree"
        )


if __name__ == "__main__":
    main()
