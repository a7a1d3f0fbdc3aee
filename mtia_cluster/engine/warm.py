"""Compile and cache the engine's numba kernels ahead of a run.

The kernels are compiled with ``cache=True``: the first process that calls them compiles
(about 10 s of CPU) and stores the machine code in the package's ``__pycache__``; every later
process loads it in well under a second. A Ray replay starts several processes at once, each
of which would otherwise compile the same kernels concurrently, so the README's setup
command runs ``python -m mtia_cluster.engine.warm`` once after installing. It covers the
R&R kernels, the LLM replica's loop and the compiled LLM fleet's span kernel (which alone
takes 10-15 s to compile on a 2 vCPU machine).
"""

from __future__ import annotations

import time

import numpy as np

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.llm.costs import IterationCost
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.output import RunOutput
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


def warm_llm_fleet() -> RunOutput:
    """Run two Llama-2-7B replicas under ``least_outstanding``: the compiled LLM fleet's
    span kernel (engine/llm/fleetkernel.py) with a metrics boundary inside the span."""
    pool = {"service": "chat", "model": "llama-2-7b", "platform": "hgx-h100"}
    scenario = {
        "name": "warm-llm",
        "report_interval_ms": 5,
        "metrics_interval_ms": 10,
        "router": {"policy": "least_outstanding"},
        "regions": [{"name": "a", "pools": [{**pool, "accelerators": 2, "tp": 1}]}],
    }
    n = 40
    arrival = np.arange(n, dtype=np.int64) * 1_000_000
    trace = make_requests(
        arrival, items=0, input_tokens=np.full(n, 200), output_tokens=np.full(n, 20)
    )
    return Simulation(parse_scenario(scenario)).run(trace)


def warm_kernels() -> float:
    """Run tiny replays that call every compiled kernel; returns the seconds it took."""
    started = time.perf_counter()
    arrival = np.arange(0, 5_000_000, 10_000, dtype=np.int64)
    n = len(arrival)
    trace = make_requests(arrival, items=np.full(n, 100), service=np.arange(n) % 2)
    for policy in ("least_outstanding", "p2c"):
        Simulation(parse_scenario(_scenario(policy))).run(trace)
    warm_llm_replica()
    warm_llm_fleet()
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"engine kernels compiled and cached in {warm_kernels():.1f} s")
