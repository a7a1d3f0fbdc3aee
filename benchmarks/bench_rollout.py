"""Wall time of the rollout timeline simulation (capacity excluded: cost-model cohorts).

Runs the shipped 16-region plan (optionally with seeded failures) and prints region-steps per
second of the simulation and of writing the outputs::

    .venv/bin/python benchmarks/bench_rollout.py
    .venv/bin/python benchmarks/bench_rollout.py --failures --repeat 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config import load_yaml
from mtia_cluster.fleet.plan import parse_plan
from mtia_cluster.fleet.run import cohorts_for, summarize, write_outputs
from mtia_cluster.fleet.simulate import simulate

PLAN = Path(__file__).resolve().parent.parent / "configs" / "rollouts" / "mtia2i-16-regions.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--failures", action="store_true", help="add MTBF 2000 h / MTTR 24 h")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    data = load_yaml(PLAN)
    if args.failures:
        data["failures"] = {"mtbf_h": 2000, "mttr_h": 24, "seed": 1}
    cat = load_catalog()
    plan = parse_plan(data, PLAN, cat)
    cohorts = cohorts_for(plan, cat, "fast")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = simulate(plan, cohorts)
        t1 = time.perf_counter()
        summary = summarize(plan, res, "fast")
        with tempfile.TemporaryDirectory() as tmp:
            write_outputs(Path(tmp) / "out", res, summary)
        t2 = time.perf_counter()
        rows = len(res.timeline["time_ns"])
        print(
            f"{plan.name}: {rows} region-steps, {len(res.events)} events; simulate "
            f"{t1 - t0:.2f} s ({rows / (t1 - t0):,.0f} region-steps/s); "
            f"summary+write {t2 - t1:.2f} s"
        )


if __name__ == "__main__":
    main()
