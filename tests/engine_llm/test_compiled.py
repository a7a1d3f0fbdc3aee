"""The compiled loop (engine/llm/kernel.py) equals the Python path and the reference.

``ReplicaScheduler.run_until`` runs the compiled loop for a replica without a prefix cache
(``sched.kernel`` set) over windows of at least ``kernel_window_as``; these tests force one
path or the other on the same scheduler class (``kernel_window_as = 0``: every call
compiled; ``kernel = None``: the Python path) and compare every result and counter.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
from conftest import pressured, replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_reference import ReferenceScheduler
from standin import StandInModel
from test_equivalence import assert_same

from mtia_cluster.engine.llm import kernel
from mtia_cluster.engine.llm.costs import probe_iteration_cost
from mtia_cluster.engine.llm.jitglue import kernel_tables
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COUNTERS = (
    "t_as",
    "iteration",
    "busy_as",
    "memory_as",
    "last_end_as",
    "last_memory",
    "tokens_done",
    "max_used_blocks",
    "reserved_blocks",
    "preempted",
    "queried_tokens",
    "kv_token_as",
    "kv_held_tokens",
    "max_kv_tokens",
    "free_blocks",
    "n_dec",
    "offset_sum",
    "residue_count",
    "finished",
    "computed",
    "generated",
    "state",
)
# replicas without a prefix cache whose costs fit the kernel (~95% of the draws; the
# others' iterations last over 4.6 s, kernel.fits_kernel)
NO_CACHE = (
    st.one_of(st.tuples(replicas(), workloads()), pressured())
    .map(lambda d: ((d[0][0], dataclasses.replace(d[0][1], prefix_caching=False)), d[1]))
    .filter(lambda d: kernel_tables(*d[0]) is not None)
)


def state(sched: ReplicaScheduler) -> dict:
    """Every counter and per-request column both paths keep, and the queues."""
    got = {name: copy.copy(getattr(sched, name)) for name in COUNTERS}  # lists change later
    got["running"] = list(sched.running)
    got["prefilling"] = list(sched.prefilling)
    # waiting or not yet taken in (a decode-run piece may take arrivals in earlier)
    got["queued"] = list(sched.waiting) + sched._stream[sched._next :]
    return got


def run(cost, limits, work, cuts, prefilled, compiled: bool) -> tuple[ReplicaScheduler, list]:
    sched = ReplicaScheduler(cost, limits)
    if compiled:
        assert sched.kernel is not None
        sched.kernel_window_as = 0  # every window compiled, however short
    else:
        sched.kernel = None
    sched.add_many(*work, prefilled)
    states = []
    for cut in cuts:
        sched.run_until(cut)
        states.append(state(sched))
    sched.run_until(None)
    return sched, states


@SETTINGS
@given(NO_CACHE, st.lists(st.floats(0, 1), max_size=10), st.data())
def test_compiled_equals_python_path_and_reference(drawn, fractions, data) -> None:
    """Random traces and limits (budgets, max_num_seqs, tiny KV caches that force
    preemption, both capacity policies, max_tokens, prefilled requests), cut anywhere: the
    compiled loop and the Python path agree on everything after every cut, and both equal
    the one-iteration reference."""
    (cost, limits), work = drawn
    n = len(work[0])
    flags = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    prefilled = flags & (work[2] >= 2)
    expected = ReferenceScheduler(cost, limits).run(*work, prefilled)
    first, last = int(work[0][0]), int(max(expected.finish_ns.max(), work[0][-1]))
    cuts = sorted(first + int(f * (last - first)) for f in fractions)
    fast, fast_states = run(cost, limits, work, cuts, prefilled, compiled=True)
    slow, slow_states = run(cost, limits, work, cuts, prefilled, compiled=False)
    assert fast_states == slow_states
    assert state(fast) == state(slow)
    assert_same(fast.outcome(), expected)
    assert_same(slow.outcome(), expected)


def _long_runs(overhead_s: float, outputs: int) -> tuple:
    """Two long decoders on a replica whose decode runs exceed a kernel piece (2**16
    iterations or 2**62 as): the compiled loop cuts them, the Python path does not."""
    model = StandInModel(kv_capacity_tokens=400_000, overhead_s=overhead_s)
    limits = ReplicaLimits(64, 8, 16, 400_000)
    work = (np.array([0, 5]), np.array([30, 3]), np.array([outputs, outputs // 2]))
    return probe_iteration_cost(model, 64), limits, work


def test_long_decode_runs_cut_into_pieces_change_nothing() -> None:
    for overhead_s, outputs in ((1e-6, 150_000), (0.5, 300)):  # > 2**16 iterations; > 4.6 s
        cost, limits, work = _long_runs(overhead_s, outputs)
        fast, _ = run(cost, limits, work, [], None, compiled=True)
        slow, _ = run(cost, limits, work, [], None, compiled=False)
        assert state(fast) == state(slow)
        assert_same(fast.outcome(), slow.outcome())
    assert fast.busy_as > 2 * kernel.BIG  # the second case ran pieces cut by time


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**62 - 1), st.integers(0, 2**90), st.data())
def test_wide_product_sum_is_exact(a, start, data) -> None:
    """The KV integral's pair adds any product of factors below 2**62 below 2**93."""
    b = data.draw(st.integers(0, min(2**62 - 1, (2**93 - 1) // max(a, 1))))
    s = np.zeros(kernel.NSCALAR, np.int64)
    s[kernel.KV_HI], s[kernel.KV_LO] = divmod(start, 2**31)
    kernel._add_product(s, a, b)
    assert (int(s[kernel.KV_HI]) << 31) + int(s[kernel.KV_LO]) == start + a * b


def test_compiled_loop_covers_replicas_without_prefix_cache_only() -> None:
    cost = probe_iteration_cost(StandInModel(), 64)
    plain = ReplicaLimits(64, 8, 16, 4096)
    assert ReplicaScheduler(cost, plain).kernel is not None
    cached = dataclasses.replace(plain, prefix_caching=True)
    assert ReplicaScheduler(cost, cached).kernel is None
    networked = dataclasses.replace(cost, network_as=(1,) * 65)
    assert ReplicaScheduler(networked, plain).kernel is None
    huge = dataclasses.replace(cost, compute_per_pair_as=2**50)  # products could pass 2**62
    assert ReplicaScheduler(huge, plain).kernel is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=1, max_size=40))
def test_finish_heap_compaction_keeps_live_entries_in_order(entries) -> None:
    """A full heap drops its stale entries (a decoder preempted or re-registered since its
    push) and pops the live ones in (finish iteration, position) order, as heapq does."""
    n = len(entries)
    req = np.zeros((kernel.NCOL, n), np.int64)
    s = np.zeros(kernel.NSCALAR, np.int64)
    hf, hr = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for r, (f, live) in enumerate(entries):
        req[kernel.ST, r] = kernel.DECODE if live else kernel.WAITING
        req[kernel.FI, r] = f
        kernel._heap_push(hf, hr, s, f, r)
    kernel._heap_compact(hf, hr, s, req)
    popped = []
    while s[kernel.HEAPN]:
        popped.append((int(hf[0]), int(hr[0])))
        kernel._heap_pop(hf, hr, s)
    assert popped == sorted((f, r) for r, (f, live) in enumerate(entries) if live)
