"""Kill a shard actor of an embedded `replay` again and again (the issue #11 scenario).

Runs `python -m mtia_cluster replay` of the shipped demo as a child process, SIGKILLs one of
its `ray::RegionWorker` processes, waits until Ray has restarted it (a new RegionWorker
process in the child's tree), waits DELAY seconds and kills that one too: KILLS kills in all.
Prints the kill times, the exit code, the stderr lines that are not progress, and the
manifest's `shard_restarts`. Only processes under the child it started are signalled.

    PYTHONPATH=. python scripts/ray-kill-shard-check.py KILLS OUT_DIR [DELAY_S]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mtia_cluster.distributed import procs


def shard_workers(root: procs.Proc) -> set[int]:
    tree = procs.descendants([root])
    return {p.pid for p in tree if procs.cmdline(p.pid).startswith("ray::RegionWorker")}


def main(kills: int, out: str, delay_s: float) -> None:
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "mtia_cluster", "replay", "configs/scenarios/multi-region.yaml"]
    cmd += ["--trace", "traces/demo.parquet", "-o", out, "--json"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = procs.identify(child.pid)
    assert root is not None
    while len(shard_workers(root)) < 2 and child.poll() is None:
        time.sleep(0.2)
    time.sleep(2)
    seen = shard_workers(root)
    victim = max(seen, default=None)
    for k in range(kills if victim is not None else 0):
        os.kill(victim, signal.SIGKILL)
        print(f"{time.monotonic() - t0:6.1f} s: kill {k + 1}, pid {victim}", flush=True)
        new: set[int] = set()
        while child.poll() is None and not new:
            new = shard_workers(root) - seen
            time.sleep(0.1)
        if not new:
            break
        seen |= new
        victim = new.pop()
        time.sleep(delay_s)
    _, stderr = child.communicate()
    print(f"exit {child.returncode} after {time.monotonic() - t0:.1f} s")
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("replaying")]
    print(f"stderr lines other than progress: {len(lines)}")
    for line in lines[:10]:
        print("  |", line[:300])
    if child.returncode == 0:
        manifest = json.loads((Path(out) / "manifest.json").read_text())
        print("shard_restarts:", manifest["shard_restarts"])


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
