"""Fixtures and Hypothesis strategies for the LLM replica tests."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from standin import StandInModel

from mtia_cluster.engine.llm.costs import IterationCost, probe_iteration_cost
from mtia_cluster.engine.llm.kvcache import block_keys
from mtia_cluster.engine.llm.limits import CAPACITY_POLICIES, ReplicaLimits


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
    policy = draw(st.sampled_from(CAPACITY_POLICIES))
    max_tokens = draw(st.sampled_from([None, None, 1, 50]))
    chunked = draw(st.sampled_from([True, True, False]))  # ReplicaLimits.chunked_prefill
    limits = ReplicaLimits(budget, seqs, block, capacity, caching, policy, max_tokens, chunked)
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
    draw: st.DrawFn, policies: tuple[str, ...] = CAPACITY_POLICIES
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
    policy = draw(st.sampled_from(policies))
    max_tokens = draw(st.sampled_from([None, None, 1, 50]))
    chunked = draw(st.sampled_from([True, True, False]))
    limits = ReplicaLimits(budget, seqs, block, capacity, caching, policy, max_tokens, chunked)
    work = (arrival.astype(np.int64), prompt, output, sessions)
    return (probe_iteration_cost(model, budget), limits), work


def draw_chains(draw: st.DrawFn, prompt: np.ndarray, block_size: int) -> list:
    """Block keys of hash chains where requests share prefixes (a few families).

    Request i's chain: its first ``shared`` hash blocks are those of family ``f`` (ids
    ``f * 1000 + m``, the same content for every request of the family), the rest its own
    (ids ``10**6 + i * 1000 + m``): equal ids mean equal prefixes, as in a hash chain. The
    hash block size differs from the KV block size (any ratio); some requests have no chain.
    """
    hash_tokens = draw(st.sampled_from([1, 2, 3, 5, 16, 48]))
    keys: list = []
    for i, p in enumerate(prompt.tolist()):
        length = -(-max(p, 0) // hash_tokens)
        if draw(st.integers(0, 5)) == 0 or length == 0:
            keys.append(None)
            continue
        family, shared = draw(st.integers(0, 2)), draw(st.integers(0, length))
        ids = [family * 1000 + m for m in range(shared)]
        ids += [10**6 + i * 1000 + m for m in range(shared, length)]
        keys.append(block_keys(ids, hash_tokens, p, block_size))
    return keys


@st.composite
def chained(
    draw: st.DrawFn,
) -> tuple[tuple[IterationCost, ReplicaLimits], tuple[np.ndarray, ...], list]:
    """A replica with prefix caching and a workload (often under KV pressure) whose requests
    carry hash-chain block keys sharing prefixes (see :func:`draw_chains`)."""
    (cost, limits), work = draw(st.one_of(st.tuples(replicas(), workloads()), pressured()))
    limits = dataclasses.replace(limits, prefix_caching=True)
    return (cost, limits), work, draw_chains(draw, work[1], limits.block_size)
