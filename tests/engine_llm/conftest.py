"""Fixtures and Hypothesis strategies for the LLM replica tests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from standin import StandInModel

from mtia_cluster.engine.llm.costs import IterationCost, probe_iteration_cost
from mtia_cluster.engine.llm.limits import ReplicaLimits


@st.composite
def replicas(draw: st.DrawFn) -> tuple[IterationCost, ReplicaLimits]:
    """A small replica: cost model (memory- or compute-bound decode) and tight limits."""
    capacity = draw(st.integers(32, 3000))
    model = StandInModel(
        kv_capacity_tokens=capacity,
        flop_per_pair=draw(st.sampled_from([5e5, 5e9, 2e10])),  # crossover or not
        kv_bytes_per_token=draw(st.sampled_from([1000, 5_000_000])),
    )
    budget = draw(st.integers(4, 300))
    seqs = draw(st.integers(1, min(budget, 24)))
    block = draw(st.sampled_from([1, 3, 16]))
    caching = draw(st.booleans())
    limits = ReplicaLimits(budget, seqs, block, capacity, prefix_caching=caching)
    return probe_iteration_cost(model, budget), limits


@st.composite
def workloads(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(arrival_ns sorted, input tokens, output tokens, session ids) of up to 40 requests."""
    n = draw(st.integers(1, 40))
    span = draw(st.sampled_from([1, 10**6, 10**8, 10**9, 10**10, 10**13]))
    offset = draw(st.sampled_from([0, 4 * 10**12]))  # past int64 attoseconds
    arrival = offset + np.sort(
        np.array(draw(st.lists(st.integers(0, span), min_size=n, max_size=n)))
    )
    prompt = np.array(draw(st.lists(st.integers(0, 700), min_size=n, max_size=n)))
    output = np.array(draw(st.lists(st.integers(0, 300), min_size=n, max_size=n)))
    sessions = np.array(draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n)))
    return arrival.astype(np.int64), prompt, output, sessions


def _lengths(draw: st.DrawFn, n: int, most: int) -> np.ndarray:
    """n token counts >= 1, about half of them tiny (short requests finish amid long ones)."""
    tiny_or_any = st.one_of(st.integers(1, 4), st.integers(1, most))
    return np.array(draw(st.lists(tiny_or_any, min_size=n, max_size=n)))


@st.composite
def pressured(
    draw: st.DrawFn,
) -> tuple[tuple[IterationCost, ReplicaLimits], tuple[np.ndarray, ...]]:
    """A replica and a workload drawn together so that the KV cache is short for it.

    ``replicas()`` x ``workloads()`` rarely make a burst of requests compete for a cache
    just large enough for the biggest one, with session entries cached at that moment, yet
    that is where preemption and prefix-cache eviction interact (both bugs Hypothesis found
    there needed it). Here every request fits, the cache holds between the largest request
    and a half/quarter/eighth of all of them, arrivals come in bursts, most requests have
    sessions and block size 1 (a new block per decoder in every iteration) is frequent.
    """
    n = draw(st.integers(2, 30))
    block = draw(st.sampled_from([1, 1, 1, 2, 3, 16]))
    prompt, output = _lengths(draw, n, 200), _lengths(draw, n, 100)
    span = draw(st.sampled_from([0, 0, 10**6, 10**7, 10**8]))
    arrival = np.sort(np.array(draw(st.lists(st.integers(0, span), min_size=n, max_size=n))))
    sessions = np.array(draw(st.lists(st.integers(-1, 5), min_size=n, max_size=n)))
    blocks = -(-(prompt + output - 1) // block)
    most = max(int(blocks.max()), int(blocks.sum()) // draw(st.sampled_from([2, 4, 8])))
    capacity = draw(st.integers(int(blocks.max()), most)) * block + draw(st.integers(0, block - 1))
    model = StandInModel(
        kv_capacity_tokens=capacity,
        flop_per_pair=draw(st.sampled_from([5e5, 5e9, 2e10])),
        kv_bytes_per_token=draw(st.sampled_from([1000, 5_000_000])),
    )
    budget = draw(st.integers(4, 256))
    seqs = draw(st.integers(1, min(budget, 24)))
    caching = draw(st.sampled_from([True, True, False]))
    limits = ReplicaLimits(budget, seqs, block, capacity, prefix_caching=caching)
    work = (arrival.astype(np.int64), prompt, output, sessions)
    return (probe_iteration_cost(model, budget), limits), work
