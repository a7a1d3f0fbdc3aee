"""Prefix caching on hash chains and KV-aware routing, on a Mooncake-format example.

1. Generates a chat trace with the project's generator (sessions over shared system prompts,
   hash chains of 512-token blocks), writes it as Mooncake JSONL (``timestamp``,
   ``input_length``, ``output_length``, ``hash_ids``) and imports it back with the Mooncake
   importer, as a real Mooncake trace would be; prints the trace's own reuse ratio computed
   from its hashes alone.
2. Hit rate against KV capacity: Llama-2-7B on one H100 (tp=1, fp16, block 16, 2,048-token
   budget), one replica's share of the traffic (the same spec at rate / replicas) at its own
   timestamps, for several KV capacities (the H100's is 108,764 tokens); and an unlimited
   cache with arrivals 10 s apart, which must reproduce the trace's ratio exactly.
3. Routing through the engine (``Simulation``, the path of ``mtia-cluster simulate``): 4
   replicas of the same, prefix caching on, for each router policy, on the Mooncake import
   (no session ids: session_affinity would be least_outstanding) and on the generated trace
   with its sessions: hit rate, TTFT, TPOT, preemptions, per-replica hit rates and peak KV.

    .venv/bin/python benchmarks/bench_prefix_cache.py [--rate 6] [--seconds 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.llm.costs import probe_iteration_cost
from mtia_cluster.engine.llm.kvcache import chains_to_keys
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.traces.generators.mix import generate_table
from mtia_cluster.traces.generators.prefix import reuse_ratio
from mtia_cluster.traces.importers.mooncake import import_mooncake, write_mooncake
from mtia_cluster.traces.io import read_trace, write_trace


def spec(rate: float, seconds: float) -> dict:
    return {
        "name": "mooncake-like-chat",
        "duration_s": seconds,
        "services": [
            {
                "name": "chat",
                "kind": "llm",
                "rate_per_s": rate,
                "lengths": {"dist": "azure-2023-conv"},
                "sessions": {"mean_turns": 4, "think_time_s": 30},
                "prefix_blocks": {
                    "block_tokens": 512,
                    "system_prompts": 8,
                    "system_prompt_tokens": 2048,
                },
            }
        ],
    }


SCENARIO = Path(__file__).resolve().parents[1] / "configs" / "scenarios" / "llm-prefix-routing.yaml"


def scenario(policy: str, replicas: int) -> object:
    return load_scenario(
        SCENARIO, [f"router.policy={policy}", f"regions.0.pools.0.accelerators={replicas}"]
    )


def ms(values: np.ndarray, q: float) -> float:
    return float(np.nanpercentile(values, q)) / 1e6


def capacity_sweep(trace_path: Path) -> None:
    cat = load_catalog()
    model = llm_iteration_model(cat.chip("h100"), cat.model("llama-2-7b"), tp=1, pp=1, dtype="fp16")
    cost = probe_iteration_cost(model, 2048)
    sc = scenario("least_outstanding", 1)
    trace = load_trace(trace_path, sc)
    prompt, output = trace.input_tokens.astype(np.int64), trace.output_tokens.astype(np.int64)
    keys = chains_to_keys(trace.prefix_blocks, prompt, 16)
    print(f"\nhit rate vs KV capacity (one H100, own KV {model.kv_capacity_tokens:,} tokens):")
    print(
        "| KV capacity, tokens | lookup hit rate | prefix_cache_hit_rate | TTFT p50 / p99, ms "
        "| preemptions | wall, s |"
    )
    print("|---|---|---|---|---|---|")
    caps = [8_192, 16_384, 32_768, 65_536, model.kv_capacity_tokens, 10**9]
    for cap in caps:
        limits = ReplicaLimits(2048, 256, 16, cap, prefix_caching=True)
        t0 = time.perf_counter()
        sched = ReplicaScheduler(cost, limits)
        sched.add_many(trace.arrival_ns, prompt, output, keys=keys)
        sched.run_until(None)
        wall = time.perf_counter() - t0
        out = sched.outcome()
        ok = ~out.rejected
        hit = out.cached_tokens.sum() / sched.queried_tokens
        reused = out.cached_tokens[ok].sum() / prompt[ok].sum()
        ttft = (out.first_token_ns - trace.arrival_ns)[ok]
        label = "unlimited" if cap == 10**9 else f"{cap:,}"
        print(
            f"| {label} | {hit:.1%} | {reused:.1%} | {ms(ttft, 50):.1f} / {ms(ttft, 99):.1f} "
            f"| {int(out.preemptions.sum()):,} | {wall:.2f} |"
            + (f" ({int(out.rejected.sum())} rejected: never fit)" if out.rejected.any() else "")
        )
    limits = ReplicaLimits(2048, 256, 16, 10**9, prefix_caching=True)
    sched = ReplicaScheduler(cost, limits)
    spaced = np.arange(len(trace), dtype=np.int64) * 10**10
    sched.add_many(spaced, prompt, output, keys=keys)
    sched.run_until(None)
    hit = sched.outcome().cached_tokens.sum() / prompt.sum()
    print(f"unlimited, arrivals 10 s apart: lookup hit rate {hit:.4%}")


def routing(trace_path: Path, replicas: int, policies: tuple[str, ...]) -> None:
    print(f"\nrouting {trace_path.name} over {replicas} replicas (Simulation.run, 5 ms reports):")
    print(
        "| policy | lookup hit rate | TTFT p50 / p99, ms | TPOT p50 / p99, ms | preemptions "
        "| per replica | peak KV use per replica | wall, s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for policy in policies:
        sc = scenario(policy, replicas)
        trace = load_trace(trace_path, sc)
        sim = Simulation(sc)
        t0 = time.perf_counter()
        rows = sim.run(trace).requests
        wall = time.perf_counter() - t0
        ttft = rows.first_token_ns - rows.arrival_ns
        tpot = tpot_ns_rows(rows)
        per, peak, cached, queried = [], [], 0, 0
        for shard in sim.shards:
            for group in shard.groups:
                stats = group.cell.stats()
                cached, queried = cached + stats["cached_tokens"], queried + stats["queried_tokens"]
                per.append(f"{stats['cached_tokens'] / stats['queried_tokens']:.0%}")
                peak.append(f"{stats['max_used_kv_blocks'] / stats['kv_blocks']:.0%}")
        hit = cached / queried
        print(
            f"| {policy} | {hit:.1%} | {ms(ttft, 50):.1f} / {ms(ttft, 99):.1f} "
            f"| {ms(tpot, 50):.2f} / {ms(tpot, 99):.2f} | {int(rows.preemptions.sum()):,} "
            f"| {' '.join(per)} | {' '.join(peak)} | {wall:.1f} |"
        )


def tpot_ns_rows(rows: object) -> np.ndarray:
    out = rows.output_tokens.astype(np.float64)  # type: ignore[attr-defined]
    span = (rows.finish_ns - rows.first_token_ns).astype(np.float64)  # type: ignore[attr-defined]
    return np.where(out > 1, span / np.maximum(out - 1, 1), np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=6.0, help="requests/s")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="keep the traces here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="prefix-bench-"))
    one = mooncake_example(out, "replica_share", args.rate / args.replicas, args.seconds)[0]
    capacity_sweep(one)
    fleet, with_sessions = mooncake_example(out, "fleet", args.rate, args.seconds)
    routing(fleet, args.replicas, ("least_outstanding", "round_robin", "prefix_affinity"))
    routing(with_sessions, args.replicas, POLICIES)


POLICIES = ("least_outstanding", "round_robin", "session_affinity", "prefix_affinity")


def mooncake_example(out: Path, name: str, rate: float, seconds: float) -> tuple[Path, Path]:
    """Generate, write as Mooncake JSONL, import: (the import, the generated trace)."""
    table, meta = generate_table(spec(rate, seconds), seed=1)
    jsonl = write_mooncake(table, out / f"mooncake_{name}.jsonl")
    trace_path = out / f"mooncake_{name}.parquet"
    import_mooncake(jsonl, trace_path, service="chat")
    with_sessions = write_trace(table, out / f"sessions_{name}.parquet", meta)
    imported = read_trace(trace_path)
    prompt = imported.column("input_tokens").to_numpy().astype(np.int64)
    ratio = reuse_ratio(imported.column("prefix_blocks").to_pylist(), prompt, 512)
    print(
        f"\n{jsonl.name}: {imported.num_rows:,} requests over {seconds:.0f} s "
        f"({rate:g}/s), mean prompt {prompt.mean():,.0f} tokens; reuse from its hashes: "
        f"{ratio:.4%}"
    )
    return trace_path, with_sessions


if __name__ == "__main__":
    main()
