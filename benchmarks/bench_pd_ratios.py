"""P:D ratio sweep: one disaggregated replica of 16 H100s, several prefill:decode splits, one
load (docs/llm-serving.md, "P:D ratios: measured").

The scenario is ``configs/scenarios/llm-pd-pools.yaml`` (Llama-3.1-8B, 8 instances of tp=2 on
two HGX H100 nodes); each ratio is the same file with ``--set`` overrides of
``disaggregation.prefill.instances`` / ``decode.instances`` (printed, so that each row can be
rerun with ``mtia-cluster simulate``), plus the same 16 GPUs as 8 co-located tp=2 replicas.
The trace is generated with the project's generator (Azure 2023 conversation lengths,
Poisson arrivals). Figures come from the one summary path (``results.summarize``); the KV
transfer counts from the replica's ``stats()``.

    .venv/bin/python benchmarks/bench_pd_ratios.py [--rate 160] [--seconds 60] [--lengths ...]
        [--trace-out /tmp/pd-sweep.parquet]

The trace is kept at ``--trace-out`` so that the printed commands can be pasted as they are.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.fabric.cells import unwrap_cell
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
from mtia_cluster.results import summarize
from mtia_cluster.traces.generators.mix import generate_table
from mtia_cluster.traces.io import write_trace

SCENARIO = Path(__file__).resolve().parent.parent / "configs/scenarios/llm-pd-pools.yaml"
POOL = "regions.0.pools.0"
RATIOS = [(2, 6), (3, 5), (4, 4), (5, 3), (6, 2)]


def overrides(ratio: tuple[int, int] | None) -> list[str]:
    """The --set overrides of one row (None: co-located replicas of tp=2)."""
    if ratio is None:
        return [f"{POOL}.disaggregation=null", f"{POOL}.tp=2"]
    return [
        f"{POOL}.disaggregation.prefill.instances={ratio[0]}",
        f"{POOL}.disaggregation.decode.instances={ratio[1]}",
    ]


def run(trace: Path, ratio: tuple[int, int] | None) -> str:
    """One row of the table: simulate, summarize, read the replica's transfer counts."""
    scenario = load_scenario(SCENARIO, overrides(ratio))
    sim = Simulation(scenario)
    requests = load_trace(trace, scenario)
    t0 = time.perf_counter()
    out = sim.run(requests)
    wall = time.perf_counter() - t0
    g = summarize(out).summary["groups"][0]
    cells = [grp.cell for shard in sim.shards for grp in shard.groups]  # type: ignore[attr-defined]
    transfers = "-"
    if ratio is not None:
        cell = unwrap_cell(cells[0])
        if not isinstance(cell, DisaggregatedCell):
            raise TypeError(f"expected a disaggregated replica, got {type(cell).__name__}")
        st = cell.stats()
        n = st["transfers_scale_up"] + st["transfers_scale_out"]
        mean_ms = st["transfer_ns_total"] / max(1, n) / 1e6
        transfers = f"{n:,} ({st['transfers_scale_out'] / max(1, n):.0%} RDMA), {mean_ms:.2f} ms"
    name = "co-located 8 x tp2" if ratio is None else f"{ratio[0]}:{ratio[1]}"
    return (
        f"| {name} | {g['ttft_ns']['p50'] / 1e6:,.1f} / {g['ttft_ns']['p99'] / 1e6:,.1f} "
        f"| {g['tpot_ns']['p50'] / 1e6:.2f} / {g['tpot_ns']['p99'] / 1e6:.2f} "
        f"| {g['completed_per_s']:.1f} | {g['output_tokens_per_s']:,.0f} "
        f"| {g['utilization']:.0%} | {transfers} | {wall:.1f} s |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=160.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--lengths", default="azure-2023-conv")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--trace-out", type=Path, default=Path(tempfile.gettempdir()) / "pd-sweep.parquet"
    )
    args = ap.parse_args()
    spec = {
        "name": "pd-sweep",
        "duration_s": args.seconds,
        "services": [
            {
                "name": "chat",
                "kind": "llm",
                "rate_per_s": args.rate,
                "lengths": {"dist": args.lengths},
            }
        ],
    }
    table, meta = generate_table(spec, seed=args.seed)
    trace = write_trace(table, args.trace_out, meta, overwrite=True)
    print(f"{table.num_rows:,} requests, {args.rate}/s for {args.seconds} s, {args.lengths}")
    for ratio in [*RATIOS, None]:
        sets = " ".join(f"--set {o}" for o in overrides(ratio))
        print(f"# mtia-cluster simulate configs/scenarios/{SCENARIO.name} --trace {trace} {sets}")
    print(
        "| P:D | TTFT p50 / p99, ms | TPOT p50 / p99, ms | requests/s | output tokens/s "
        "| utilization | KV transfers (RDMA share), mean link time | wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for ratio in [*RATIOS, None]:
        print(run(trace, ratio), flush=True)


if __name__ == "__main__":
    main()
