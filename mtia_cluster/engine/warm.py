"""Compile and cache the engine's numba kernels ahead of a run.

The kernels are compiled with ``cache=True``: the first process that calls them compiles
(about 10 s of CPU) and stores the machine code in the package's ``__pycache__``; every later
process loads it in well under a second. A Ray replay starts several processes at once, each
of which would otherwise compile the same kernels concurrently, so the README's setup
command runs ``python -m mtia_cluster.engine.warm`` once after installing.
"""

from __future__ import annotations

import time

import numpy as np

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.llm.costs import IterationCost
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.simulation import Simulation


def _scenario(policy: str) -> dict:
    pool = {"service": "rank", "model": "lc1", "platform": "mtia-2i-rack", "hosts": 2}
    syn = {"service": "syn", "model": "svc-exp-1ms", "platform": "mtia-2i-rack"}
    return {
        "name": "warm",
        "report_interval_ms": 1,
        "router": {"policy": policy},
        "regions": [{"name": "a", "pools": [pool, {**syn, "accelerators": 2}]}],
        "events": [{"at_s": 0.002, "kind": "fail", "region": "a", "hosts": [0]}],
    }


def warm_llm_replica() -> list[ReplicaScheduler]:
    """Run the LLM replica's compiled loop (engine/llm/kernel.py) under KV pressure
    (preemptions) and with guaranteed_no_evict; returns the two schedulers."""
    steps = tuple(range(0, 10**13, 10**11))[:65]
    cost = IterationCost(64, steps, 10**9, steps, 10**9, steps)
    done = []
    for policy in ("max_utilization", "guaranteed_no_evict"):
        sched = ReplicaScheduler(cost, ReplicaLimits(64, 4, 4, 64, capacity_policy=policy))
        n = 12
        sched.add_many(np.zeros(n, np.int64), np.full(n, 20), np.full(n, 9))
        sched.run_until(None)
        done.append(sched)
    return done


def warm_kernels() -> float:
    """Run tiny replays that call every compiled kernel; returns the seconds it took."""
    started = time.perf_counter()
    arrival = np.arange(0, 5_000_000, 10_000, dtype=np.int64)
    n = len(arrival)
    trace = make_requests(arrival, items=np.full(n, 100), service=np.arange(n) % 2)
    for policy in ("least_outstanding", "p2c"):
        Simulation(parse_scenario(_scenario(policy))).run(trace)
    warm_llm_replica()
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"engine kernels compiled and cached in {warm_kernels():.1f} s")
