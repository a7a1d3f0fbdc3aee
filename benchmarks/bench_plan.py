"""Wall time of `mtia-cluster plan` on the shipped example (issue #19: 3 chips x 10
configurations x 2 services in under 5 minutes on 2 cores).

Runs the command as a user does (a fresh process, an embedded local Ray for the confirming
replays unless --address says otherwise) and prints the wall time with the search's own
figures (candidates, replays, search seconds)::

    .venv/bin/python benchmarks/bench_plan.py
    .venv/bin/python benchmarks/bench_plan.py --address inprocess   # replays in this process
    .venv/bin/python benchmarks/bench_plan.py --no-confirm          # cost-model pruning only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAN = Path(__file__).resolve().parent.parent / "configs" / "plans" / "rr-and-chat-3-regions.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--plan", type=Path, default=PLAN)
    ap.add_argument("--address", default=None, help="Ray address or 'inprocess'")
    ap.add_argument("--no-confirm", action="store_true", help="estimates only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mtia_cluster", "plan", str(args.plan), "--json"]
        cmd += ["-o", str(Path(tmp) / "out")]
        if args.address:
            cmd += ["--address", args.address]
        if args.no_confirm:
            cmd.append("--no-confirm")
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        # CPU seconds of the command (in process: every replay; with Ray, the driver only):
        # on a shared, loaded machine the wall time says more about the neighbours
        use = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = use.ru_utime + use.ru_stime
    if done.returncode != 0:
        sys.exit(f"plan failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    res = json.loads(done.stdout)
    chips = {(c["service"], c["chip"]) for c in res["candidates"]}
    configs = {(c["service"], c["label"]) for c in res["candidates"]}
    print(
        f"{args.plan.name}: {len(configs)} candidates ({len(chips)} service x chip), "
        f"{len(res['candidates'])} candidate x region rows, {res['replays']} replays; "
        f"search {res['search_s']:.1f} s, command wall {wall:.1f} s "
        f"(Ray start-up, output writing included), command CPU {cpu:.1f} s"
    )
    for w in res["winners"]:
        row = w["winner"]
        print(f"  {w['region']:9} {w['service']:11} {row['label'] if row else '(none)'}")


if __name__ == "__main__":
    main()
