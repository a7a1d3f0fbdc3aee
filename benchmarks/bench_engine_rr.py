"""R&R replay speed: one region of 10 MTIA 2i racks (720 accelerators) at ~70% utilization.

Prints requests replayed per wall-clock second (single process, exact per host), the
utilization reached, and memory per accelerator (engine state, measured with tracemalloc
over building the fleet). The arrival rate for the target utilization is calibrated on
short runs first (utilization is measured, not assumed).

    .venv/bin/python benchmarks/bench_engine_rr.py [--model hc1] [--seconds 2] [--racks 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numpy as np

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import summarize


def scenario(model: str, racks: int, policy: str) -> dict:
    return {
        "name": "bench-rr",
        "seed": 1,
        "report_interval_ms": 5,
        "metrics_interval_ms": 1000,
        "router": {"policy": policy},
        "regions": [
            {
                "name": "r0",
                "pools": [
                    {
                        "service": "rank",
                        "model": model,
                        "platform": "mtia-2i-rack",
                        "racks": racks,
                        "batching": {"max_items": 1024, "max_wait_us": 1000},
                    }
                ],
            }
        ],
    }


def trace(rate_per_s: float, seconds: float, seed: int = 0) -> RequestBatch:
    """Poisson arrivals, items lognormal with mean ~270 (MLPerf DLRM-like)."""
    rng = entity_rng(seed, 77)
    n = int(rate_per_s * seconds)
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * (1e9 / rate_per_s)))
    items = np.clip(np.round(rng.lognormal(np.log(230), 0.55, n)), 1, 4000)
    return make_requests(arrival.astype(np.int64), items=items.astype(np.int32))


def utilization(cfg: dict, rate: float, seconds: float) -> float:
    res = Simulation(parse_scenario(cfg)).run(trace(rate, seconds))
    return float(summarize(res).summary["groups"][0]["utilization"])


def calibrate(cfg: dict, target: float) -> tuple[float, float]:
    """Arrival rate giving `target` utilization (secant steps on short runs)."""
    rate = 1e5
    util = utilization(cfg, rate, 0.2)
    for _ in range(4):
        rate *= target / max(util, 1e-6)
        util = utilization(cfg, rate, 0.3)
        if abs(util - target) < 0.01:
            break
    return rate, util


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="hc1")
    ap.add_argument("--racks", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated seconds")
    ap.add_argument("--utilization", type=float, default=0.7)
    ap.add_argument("--policy", default="least_outstanding")
    args = ap.parse_args()
    cfg = scenario(args.model, args.racks, args.policy)
    rate, _ = calibrate(cfg, args.utilization)
    tr = trace(rate, args.seconds, seed=1)
    tracemalloc.start()
    sim = Simulation(parse_scenario(cfg))
    build_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    accelerators = sim.topology.accelerators
    started, cpu_started = time.perf_counter(), time.process_time()
    res = sim.run(tr)
    wall = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    row = summarize(res).summary["groups"][0]
    cpu = _cpu_model()
    print(f"machine: {os.cpu_count()} cpus, {cpu}, Python {platform.python_version()}")
    print(f"fleet: {args.racks} racks MTIA 2i = {accelerators} accelerators, model {args.model}")
    print(f"offered {rate:,.0f} req/s for {args.seconds} s simulated: {len(tr):,} requests")
    print(
        f"utilization {row['utilization']:.3f}, latency p50 {row['latency_ns']['p50'] / 1e6:.3f} "
        f"ms, p99 {row['latency_ns']['p99'] / 1e6:.3f} ms"
    )
    print(f"wall {wall:.2f} s -> {len(tr) / wall:,.0f} requests per wall-clock second")
    print(
        f"cpu {cpu_s:.2f} s -> {len(tr) / cpu_s:,.0f} requests per CPU second "
        "(the machine may be shared; wall/cpu > 1 means other load)"
    )
    print(f"engine state after build: {build_bytes / accelerators / 1024:.1f} KiB per accelerator")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
