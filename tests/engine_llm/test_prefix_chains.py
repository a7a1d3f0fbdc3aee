"""Prefix caching on hash chains: block keys, generated chains, trace files to the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standin import StandInModel, prefix_scenario

from mtia_cluster.engine.cell import STATUS_OK
from mtia_cluster.engine.llm.costs import probe_iteration_cost
from mtia_cluster.engine.llm.kvcache import block_keys, chains_to_keys
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
from mtia_cluster.errors import UserError
from mtia_cluster.traces.columns import PrefixChain
from mtia_cluster.traces.generators.mix import generate_table
from mtia_cluster.traces.generators.prefix import reuse_ratio
from mtia_cluster.traces.importers.mooncake import import_mooncake, write_mooncake
from mtia_cluster.traces.io import write_trace


def spec(block_tokens: int = 64, rate: float = 1.0, duration_s: float = 300) -> dict:
    return {
        "name": "chains",
        "duration_s": duration_s,
        "services": [
            {
                "name": "chat",
                "kind": "llm",
                "rate_per_s": rate,
                "sessions": {"mean_turns": 3, "think_time_s": 20},
                "prefix_blocks": {
                    "block_tokens": block_tokens,
                    "system_prompts": 3,
                    "system_prompt_tokens": 700,
                },
            }
        ],
    }


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(1, 17),
)
def test_equal_keys_mean_equal_prefixes(a, b, hash_tokens, extra, block) -> None:
    """Keys from two chains agree at KV block j exactly when their hash chains agree on
    every hash block up to the one holding the block's last token, for any block sizes."""
    # token t's content is (a or b)[t // hash_tokens]; a hash block's id names the whole
    # prefix up to it (one id per distinct prefix, shared by both chains)
    names: dict[tuple[int, ...], int] = {}

    def chain(contents: list[int]) -> tuple[list[int], int]:
        ids = [names.setdefault(tuple(contents[: m + 1]), len(names)) for m in range(len(contents))]
        return ids, len(contents) * hash_tokens - (extra % hash_tokens)

    ids_a, p_a = chain(a)
    ids_b, p_b = chain(b)
    keys_a = block_keys(ids_a, hash_tokens, p_a, block)
    keys_b = block_keys(ids_b, hash_tokens, p_b, block)
    assert len(keys_a) == p_a // block
    for j in range(min(len(keys_a), len(keys_b))):
        last = (j + 1) * block - 1
        same = a[: last // hash_tokens + 1] == b[: last // hash_tokens + 1]
        assert (keys_a[j] == keys_b[j]) == same


def chains_of(table: pa.Table) -> np.ndarray:
    block = 64
    out = np.full(table.num_rows, None, dtype=object)
    for i, c in enumerate(table.column("prefix_blocks").to_pylist()):
        out[i] = PrefixChain(block, np.array(c, dtype=np.int64))
    return out


def test_unlimited_cache_reproduces_the_traces_reuse() -> None:
    """A cache that never evicts reuses exactly the share of prompt tokens in leading hash
    blocks seen earlier, computed from the trace's hashes alone (arrivals spaced so that
    every earlier prompt is computed before the next arrives)."""
    table, meta = generate_table(spec(), seed=5)
    assert meta["parameters"]["block_tokens"] == 64
    n = table.num_rows
    prompt = table.column("input_tokens").to_numpy().astype(np.int64)
    output = table.column("output_tokens").to_numpy().astype(np.int64)
    chains = table.column("prefix_blocks").to_pylist()
    expected = reuse_ratio(chains, prompt, 64)
    assert 0.3 < expected < 0.95  # shared system prompts and sessions: much reuse
    cost = probe_iteration_cost(StandInModel(kv_capacity_tokens=10**9), 2048)
    for block in (16, 64, 32):  # KV blocks dividing the hash block
        limits = ReplicaLimits(2048, 64, block, 10**9, prefix_caching=True)
        sched = ReplicaScheduler(cost, limits)
        keys = chains_to_keys(chains_of(table), prompt, block)
        arrival = np.arange(n, dtype=np.int64) * 10**10  # 10 s apart
        sched.add_many(arrival, prompt, output, keys=keys)
        sched.run_until(None)
        out = sched.outcome()
        assert out.cached_tokens.sum() == round(expected * prompt.sum())
        assert sched.queried_tokens == prompt.sum()  # every prompt looked up once
        assert not out.rejected.any() and not out.preemptions.any()


def test_reuse_shrinks_with_the_kv_cache() -> None:
    """Less KV, fewer hits: LRU evicts reusable blocks sooner (arrivals 5 s apart, so the
    cache, not running requests, holds the KV: no preemptions)."""
    table, _ = generate_table(spec(rate=4.0, duration_s=120), seed=2)
    arrival = np.arange(table.num_rows, dtype=np.int64) * 5 * 10**9
    prompt = table.column("input_tokens").to_numpy().astype(np.int64)
    output = table.column("output_tokens").to_numpy().astype(np.int64)
    keys = chains_to_keys(chains_of(table), prompt, 16)
    cost = probe_iteration_cost(StandInModel(kv_capacity_tokens=10**9), 2048)
    hits = []
    for capacity in (40_000, 160_000, 10**9):
        sched = ReplicaScheduler(cost, ReplicaLimits(2048, 64, 16, capacity, prefix_caching=True))
        sched.add_many(arrival, prompt, output, keys=keys)
        sched.run_until(None)
        assert not sched.outcome().preemptions.any()
        hits.append(int(sched.outcome().cached_tokens.sum()))
        assert hits[-1] <= sched.queried_tokens == prompt.sum()
    assert hits[0] < hits[1] < hits[2]


def scenario(policy: str = "least_outstanding", replicas: int = 1) -> object:
    return prefix_scenario(policy, replicas, seed=3)


def test_mooncake_file_round_trip_reaches_the_replica(tmp_path: Path) -> None:
    """A generated trace written as Mooncake JSONL, imported, simulated: its chains reach
    the replica's prefix cache (hits in the rows), and the rows' cached tokens add up."""
    table, _ = generate_table(spec(block_tokens=512, rate=0.5, duration_s=120), seed=4)
    jsonl = write_mooncake(table, tmp_path / "trace.jsonl")
    trace_path = tmp_path / "trace.parquet"
    import_mooncake(jsonl, trace_path, service="chat")
    sim = Simulation(scenario())
    trace = load_trace(trace_path, sim.scenario)
    assert trace.prefix_blocks[0].block_tokens == 512
    rows = Simulation(scenario()).run(trace).requests
    assert np.all(rows.status == STATUS_OK)
    assert rows.cached_tokens.sum() > 0
    assert np.all(rows.cached_tokens <= rows.input_tokens)
    assert np.all(rows.cached_tokens % 16 == 0)


def test_chains_without_block_size_are_refused(tmp_path: Path) -> None:
    table, meta = generate_table(spec(), seed=1)
    del meta["parameters"]["block_tokens"]
    path = write_trace(table, tmp_path / "t.parquet", meta)
    with pytest.raises(UserError, match=r"parameters\.block_tokens"):
        load_trace(path, scenario())


def test_null_hash_ids_are_refused(tmp_path: Path) -> None:
    table, meta = generate_table(spec(), seed=1)
    chains = table.column("prefix_blocks").to_pylist()
    chains[3] = [*chains[3][:2], None]
    bad = table.set_column(
        table.column_names.index("prefix_blocks"),
        "prefix_blocks",
        pa.array(chains, pa.list_(pa.int64())),
    )
    path = write_trace(bad, tmp_path / "t.parquet", meta)
    with pytest.raises(UserError, match="must not hold nulls"):
        load_trace(path, scenario())
