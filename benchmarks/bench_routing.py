"""Routing cost in the engine (issue 18): requests per CPU-second of `Simulation.run` and the
CPU spent in the routing plane (``RoutingPlane.route`` + ``refresh``: the routers' choices
and the load reports they read), for two load-aware cases:

* ``fleet``: 16 regions x 100 MTIA 2i racks of HC1 (bench_fleet.py's fleet: 300 R&R hosts
  per region router) at 100k requests/s under ``least_outstanding``, `--seconds` simulated;
  ``fleet-p2c``: the same under ``p2c``;
* ``llm``: the Azure LLM conversation trace (2023) at 8x its rate on 8 Llama-2-7B H100
  replicas (tp=1, one region) under ``least_outstanding`` and, for comparison, ``round_robin``
  (which reads no reports, so its windows coalesce).

Each case runs in a fresh process per checkout (`--tree`, default this one: PYTHONPATH picks
the package), alternating between checkouts for `--repeat` rounds, after one warm-up run per
checkout that compiles the numba kernels; each process first runs the trace's first 2,000
requests on a separate Simulation (loading the cached kernels), then times the whole trace.
Prints every run (for the LLM cases also how many times a replica was advanced) and the
medians. Windows, replica advances and routing-plane time count the Python window loop
only: under ``least_outstanding`` and ``round_robin`` the compiled LLM fleet
(engine/llm/fleet.py) runs the windows up to the last arrival inside one call, so what is
left is the drain. Compare
checkouts in ONE run: the machine is small and shared. The digest of the finish times is
the same on every checkout when the choices are.

    .venv/bin/python benchmarks/bench_routing.py [--tree /path/a --tree /path/b] \
        [--repeat 3] [--seconds 5] [--cases fleet llm llm-rr]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CASES = ("fleet", "fleet-p2c", "llm", "llm-rr")


def llm_scenario(policy: str, replicas: int) -> dict[str, Any]:
    """One region of `replicas` Llama-2-7B replicas on H100 (tp=1), 5 ms reports."""
    pool = {
        "service": "chat",
        "model": "llama-2-7b",
        "platform": "hgx-h100",
        "accelerators": replicas,
        "tp": 1,
        "max_num_batched_tokens": 2048,
    }
    return {
        "name": f"bench-llm-{replicas}x-{policy}",
        "seed": 1,
        "report_interval_ms": 5,
        "metrics_interval_ms": 1000,
        "router": {"policy": policy},
        "regions": [{"name": "r", "pools": [pool]}],
        "slo": {"chat": {"ttft_p99_ms": 2000, "tpot_p99_ms": 100}},
    }


def _fleet(seconds: float, policy: str = "least_outstanding") -> tuple[Any, Any]:
    from bench_fleet import trace_table
    from bench_replay import scenario

    from mtia_cluster.config.scenario import parse_scenario
    from mtia_cluster.engine.cell import make_requests

    scn = parse_scenario(
        {**scenario(16, 100), "router": {"policy": policy}}, file="bench-fleet.yaml"
    )
    table = trace_table(16, int(100_000 * seconds), 100_000, 0)
    region = table["region"].combine_chunks().indices.to_numpy()  # r00..r15: config order
    arrival, items = table["arrival_ns"].to_numpy(), table["items"].to_numpy()
    return scn, make_requests(arrival, region=region, items=items)


def _llm(policy: str, speedup: float = 8.0) -> tuple[Any, Any]:
    from bench_engine_llm import DEFAULT_TRACE, read_azure

    from mtia_cluster.config.scenario import parse_scenario
    from mtia_cluster.engine.cell import make_requests

    arrival, prompt, output = read_azure(DEFAULT_TRACE)
    scn = parse_scenario(llm_scenario(policy, 8), file="bench-llm.yaml")
    arrival = (arrival / speedup).astype(np.int64)
    batch = make_requests(arrival, items=0, input_tokens=prompt, output_tokens=output)
    return scn, batch


def child(case: str, seconds: float) -> dict[str, float]:
    """One run of `case` in this process: CPU seconds in total and in the routing plane."""
    from mtia_cluster.engine.routing import RoutingPlane
    from mtia_cluster.engine.simulation import Simulation

    if case.startswith("fleet"):
        scn, trace = _fleet(seconds, "p2c" if case == "fleet-p2c" else "least_outstanding")
    else:
        scn, trace = _llm("round_robin" if case == "llm-rr" else "least_outstanding")
    spent = {"route": 0.0, "refresh": 0.0, "windows": 0}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - t0
                spent["windows"] += name == "refresh"

        return wrapper

    Simulation(scn).run(trace.take(slice(0, 2000)))  # load every cached kernel: not counted
    RoutingPlane.route = timed("route", RoutingPlane.route)  # type: ignore[method-assign]
    RoutingPlane.refresh = timed("refresh", RoutingPlane.refresh)  # type: ignore[method-assign]
    if case.startswith("llm"):  # how many replica advances the windows cost (no timing)
        _count_advances(spent)
    sim = Simulation(scn)
    t0, cpu0 = time.perf_counter(), time.process_time()
    out = sim.run(trace)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert len(out.requests) == len(trace)
    # a digest of the placement: the same on every checkout when decisions are identical
    digest = int(np.sum(out.requests.finish_ns % 1_000_003 * (out.requests.request_id % 97 + 1)))
    return {"n": len(trace), "wall": wall, "cpu": cpu, **spent, "digest": digest}


def _count_advances(spent: dict[str, float]) -> None:
    """Count ``LLMReplicaCell.advance`` calls into ``spent["advances"]``."""
    from mtia_cluster.engine.llm.cell import LLMReplicaCell

    advance = LLMReplicaCell.advance
    spent["advances"] = 0

    def counted(self: Any, until_ns: int) -> Any:
        spent["advances"] += 1
        return advance(self, until_ns)

    LLMReplicaCell.advance = counted  # type: ignore[method-assign]


def run_child(tree: Path, case: str, seconds: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, str(Path(__file__).resolve()), "--child", case]
    res = subprocess.run(
        [*args, "--seconds", str(seconds)], env=env, capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise SystemExit(f"{case} on {tree} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _line(tree: Path, case: str, r: dict[str, float]) -> str:
    plane = r["route"] + r["refresh"]
    return (
        f"{case:9s} {tree}: {r['n']:,} requests, CPU {r['cpu']:.2f} s = "
        f"{r['n'] / r['cpu']:,.0f} requests per CPU-second (wall {r['wall']:.2f} s); routing "
        f"plane {plane:.2f} s ({plane / r['cpu']:.0%}) over {int(r['windows']):,} windows = "
        f"{plane / max(r['windows'], 1) * 1e6:.1f} us/window"
        + (f", {int(r['advances']):,} replica advances" if "advances" in r else "")
        + f"; digest {int(r['digest'])}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tree", type=Path, action="append", help="checkout to measure")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="fleet: simulated seconds")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return
    trees = args.tree or [HERE.parent]
    from bench_engine_rr import _cpu_model

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cpus, {_cpu_model()}; load average {load}")
    for tree in trees:  # compile and cache each checkout's kernels: not counted
        run_child(tree, "fleet", 0.05)
        run_child(tree, "llm-rr", 1.0)
    results: dict[tuple[Path, str], list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for case in args.cases:
            for tree in trees:
                r = run_child(tree, case, args.seconds)
                results.setdefault((tree, case), []).append(r)
                print(_line(tree, case, r), flush=True)
    print("medians:")
    for (tree, case), runs in results.items():
        rate = median(r["n"] / r["cpu"] for r in runs)
        plane = median((r["route"] + r["refresh"]) / max(r["windows"], 1) for r in runs)
        print(
            f"  {case:9s} {tree}: {rate:,.0f} requests per CPU-second, routing plane "
            f"{plane * 1e6:.1f} us/window"
        )
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
