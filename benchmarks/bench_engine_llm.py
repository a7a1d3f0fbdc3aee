"""Requests per wall-clock second of the LLM replica scheduler on the Azure conversation trace.

Llama-2-7B on one H100 (tp=1, pp=1, fp16), chunked prefill, the whole Azure LLM inference
trace 2023 (conversation, 19,366 requests), replayed at its own timestamps. Prints one line
per configuration. Usage::

    .venv/bin/python benchmarks/bench_engine_llm.py [--trace PATH] [--repeat N] [--reference]

``--reference`` also times the one-iteration-at-a-time reference scheduler and checks that
both give identical per-request outcomes (every column), peak KV blocks and prefix-cache
entries, for the three budgets and the multi-turn sessions with and without prefix caching.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mtia_cluster.catalog import load_catalog
from mtia_cluster.engine.llm.costs import probe_iteration_cost
from mtia_cluster.engine.llm.limits import ReplicaLimits, tpot_ns
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.workloads import LLMModel

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2]
    / "shared/data/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"
)


def read_azure(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival_ns since the first request, input tokens, output tokens), sorted by arrival."""
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={
                "TIMESTAMP": pa.timestamp("ns"),
                "ContextTokens": pa.int64(),
                "GeneratedTokens": pa.int64(),
            }
        ),
    )
    stamps = pc.cast(table["TIMESTAMP"], pa.int64()).to_numpy()
    order = np.argsort(stamps, kind="stable")
    arrival = stamps[order] - stamps[order][0]
    return (
        arrival,
        table["ContextTokens"].to_numpy()[order],
        table["GeneratedTokens"].to_numpy()[order],
    )


def run_once(cost, limits, arrival, prompt, output, session=None):
    """Wall seconds of one full replay, and the scheduler."""
    t0 = time.perf_counter()
    sched = ReplicaScheduler(cost, limits)
    sched.add_many(arrival, prompt, output, session)
    sched.run_until(None)
    return time.perf_counter() - t0, sched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument(
        "--compress",
        type=float,
        default=1.0,
        help="divide inter-arrival times by this factor (heavier load, KV pressure)",
    )
    args = parser.parse_args()
    arrival, prompt, output = read_azure(args.trace)
    arrival = (arrival / args.compress).astype(np.int64)
    cat = load_catalog()
    llama = cat.model("llama-2-7b")
    assert isinstance(llama, LLMModel)
    model = llm_iteration_model(cat.chip("h100"), llama, tp=1, pp=1, dtype="fp16")
    print(
        f"trace {args.trace.name}: {len(arrival)} requests over {arrival[-1] / 1e9:.0f} s; "
        f"KV capacity {model.kv_capacity_tokens} tokens"
    )
    for budget, seqs in ((512, 256), (2048, 256), (8192, 256)):
        limits = ReplicaLimits(budget, seqs, 16, model.kv_capacity_tokens)
        cost = probe_iteration_cost(model, budget)
        walls = []
        for _ in range(args.repeat):
            wall, sched = run_once(cost, limits, arrival, prompt, output)
            walls.append(wall)
        out = sched.outcome()
        ttft = (out.first_token_ns - arrival) / 1e6
        tpot = tpot_ns(out, output) / 1e6
        best = min(walls)
        print(
            f"max_num_batched_tokens={budget} max_num_seqs={seqs}: "
            f"{len(arrival) / best:,.0f} requests/s (best of {args.repeat}: {best:.3f} s; "
            f"{sched.iteration:,} iterations = {sched.iteration / best:,.0f}/s); "
            f"TTFT p50/p99 {np.percentile(ttft, 50):.1f}/{np.percentile(ttft, 99):.1f} ms, "
            f"TPOT p50/p99 {np.nanpercentile(tpot, 50):.2f}/{np.nanpercentile(tpot, 99):.2f} "
            f"ms, preemptions {int(out.preemptions.sum())}"
        )
        if args.reference:
            check_reference(sched, cost, limits, arrival, prompt, output)
    sessions_benchmark(model, arrival, args.repeat, args.reference)
    cells_benchmark(cat, arrival, prompt, output, args.repeat)


def check_reference(sched, cost, limits, arrival, prompt, output, session=None) -> None:
    """Replay with the one-iteration reference; print its speed and whether every outcome
    column, the peak KV blocks and the final prefix-cache entries are identical."""
    # The reference is a test oracle: it lives under tests/, not in the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine_llm"))
    from llm_reference import ReferenceScheduler

    t0 = time.perf_counter()
    ref = ReferenceScheduler(cost, limits)
    expected = ref.run(arrival, prompt, output, session)
    wall = time.perf_counter() - t0
    out = sched.outcome()
    same = (
        all(np.array_equal(getattr(expected, k), getattr(out, k)) for k in OUTCOME_COLUMNS)
        and ref.max_used_blocks == sched.max_used_blocks
        and list(ref.cache.items()) == list(sched.kv.cache.items())
    )
    print(f"  reference: {len(arrival) / wall:,.0f} requests/s ({wall:.1f} s); identical: {same}")


OUTCOME_COLUMNS = (
    "start_ns",
    "first_token_ns",
    "finish_ns",
    "rejected",
    "batch_size",
    "preemptions",
    "cached_tokens",
)


def sessions_benchmark(model, arrival, repeat, reference=False):
    """Multi-turn sessions (traces' generator) started at every sixth Azure arrival."""
    from mtia_cluster.config.trace_spec import Sessions, TableLengths
    from mtia_cluster.engine.rng import entity_rng
    from mtia_cluster.traces.generators.sessions import sessionize

    turns = sessionize(
        entity_rng(1, 4, 0),
        arrival[::6],
        Sessions(mean_turns=3, think_time_s=30),
        TableLengths(dist="azure-2023-conv"),
    )
    a, p, o, sid = (turns[k] for k in ("arrival_ns", "input_tokens", "output_tokens", "session_id"))
    print(
        f"multi-turn sessions: {len(a)} requests, {len(arrival[::6])} sessions, "
        f"mean prompt {p.mean():.0f} tokens"
    )
    for caching in (False, True):
        limits = ReplicaLimits(2048, 256, 16, model.kv_capacity_tokens, prefix_caching=caching)
        cost = probe_iteration_cost(model, 2048)
        best = min(run_once(cost, limits, a, p, o, sid)[0] for _ in range(repeat))
        _, sched = run_once(cost, limits, a, p, o, sid)
        out = sched.outcome()
        ttft = (out.first_token_ns - a) / 1e6
        print(
            f"  prefix_caching={caching}: {len(a) / best:,.0f} requests/s ({best:.3f} s); "
            f"TTFT p50/p99 {np.percentile(ttft, 50):.1f}/{np.percentile(ttft, 99):.1f} ms; "
            f"prompt tokens from cache {out.cached_tokens.sum() / p.sum():.1%}; "
            f"preemptions {int(out.preemptions.sum())}"
        )
        if reference:
            check_reference(sched, cost, limits, a, p, o, sid)


def _spec(cat, chips: int, pool: dict):
    """The CellSpec of one replica of `chips` H100s with `pool`'s settings, resolved as a
    scenario file's are."""
    from mtia_cluster.config.scenario import parse_scenario
    from mtia_cluster.engine.cell import CellSpec

    doc = {
        "regions": [
            {
                "name": "r",
                "pools": [
                    {
                        "service": "chat",
                        "model": "llama-2-7b",
                        "platform": "hgx-h100",
                        "accelerators": chips,
                        "accelerators_per_replica": chips,
                        **pool,
                    }
                ],
            }
        ]
    }
    p = parse_scenario(doc, catalog=cat).regions[0].pools[0]
    assert p.llm is not None
    return CellSpec(
        cell_id=0,
        region=0,
        service=0,
        model_name="llama-2-7b",
        platform_name="hgx-h100",
        accelerator_ids=tuple(range(chips)),
        host_ids=(0,),
        seed=0,
        llm=p.llm,
        file=None,
        field_prefix=p.field_prefix,
        catalog=cat,
    )


def _drive(cell, batch, windowed: bool) -> list:
    """Submit and advance like the engine: 10 ms windows, or one call."""
    if not windowed:
        cell.submit(batch)
        return [cell.advance(2**62)]
    arrival = batch.arrival_ns
    window_ns = 10_000_000
    edges = np.arange(window_ns, int(arrival[-1]) + 10**12, window_ns)
    cuts = np.searchsorted(arrival, edges)
    parts, start = [], 0
    for until, stop in zip(edges.tolist(), cuts.tolist(), strict=True):
        if stop > start:
            cell.submit(batch.take(slice(start, stop)))
            start = stop
        parts.append(cell.advance(until))
        if start == len(arrival) and cell.report().outstanding == 0:
            break
    return parts


def cells_benchmark(cat, arrival, prompt, output, repeat):
    """The engine cells: windows of 10 ms, and a 2-H100 replica vs 1+1 disaggregated."""
    from mtia_cluster.engine.cell import Completed, make_requests
    from mtia_cluster.engine.llm.factory import build_llm_cell

    batch = make_requests(arrival, input_tokens=prompt, output_tokens=output, items=0)
    for name, chips, pool, windowed in (
        ("1 H100 replica, 10 ms windows", 1, {}, True),
        ("2 H100, tp=2 replica", 2, {}, False),
        ("2 H100, 1 prefill + 1 decode", 2, {"disaggregation": {"prefill_accelerators": 1}}, False),
    ):
        walls = []
        for _ in range(repeat):
            cell = build_llm_cell(_spec(cat, chips, pool))
            t0 = time.perf_counter()
            parts = _drive(cell, batch, windowed)
            walls.append(time.perf_counter() - t0)
        wall = min(walls)
        done = Completed.concat(parts)
        ttft = (done.first_token_ns - done.arrival_ns) / 1e6
        tpot = (done.finish_ns - done.first_token_ns) / np.maximum(done.output_tokens - 1, 1) / 1e6
        multi = done.output_tokens > 1
        print(
            f"cell {name}: {len(done) / wall:,.0f} requests/s (best of {repeat}: {wall:.2f} s); "
            f"TTFT p50/p99 {np.percentile(ttft, 50):.1f}/{np.percentile(ttft, 99):.1f} ms, "
            f"TPOT p50/p99 {np.percentile(tpot[multi], 50):.2f}/"
            f"{np.percentile(tpot[multi], 99):.2f} ms"
        )


if __name__ == "__main__":
    main()
