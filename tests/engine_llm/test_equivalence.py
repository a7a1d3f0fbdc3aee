"""The fast scheduler equals the one-iteration-at-a-time reference, window cuts included."""

from __future__ import annotations

import numpy as np
from conftest import chained, pressured, replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_reference import ReferenceScheduler, Snapshot

from mtia_cluster.engine.llm.limits import Outcome
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler

FIELDS = (
    "start_ns",
    "first_token_ns",
    "finish_ns",
    "rejected",
    "batch_size",
    "preemptions",
    "cached_tokens",
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The fast-vs-reference properties are this package's main check, so they explore more: a
# run of the pressured one hit the old preemption-order bug in ~0.5% of its examples.
EQUIVALENCE = settings(SETTINGS, max_examples=600)
PRESSURED = settings(SETTINGS, max_examples=1500)
# where to cut the busy span [first arrival, last finish] and compare the states
FRACTIONS = st.lists(st.floats(0, 1), max_size=12)
ANY_WORKLOAD = st.one_of(st.tuples(replicas(), workloads()), pressured())


def assert_same(a: Outcome, b: Outcome) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def run_fast(cost, limits, work, cuts=()):
    sched = ReplicaScheduler(cost, limits)
    sched.add_many(*work)
    for until in cuts:
        sched.run_until(int(until))
    sched.run_until(None)
    return sched


def fast_snapshot(sched: ReplicaScheduler) -> Snapshot:
    """The fast scheduler's state in the reference's terms (see ReferenceScheduler.run)."""
    kv = sched.kv
    return Snapshot(sched.t_as, sched.iteration, kv.free, kv.cached, tuple(kv.cache.items()))


def assert_matches_reference(cost, limits, work, fractions=(), prefilled=None, keys=None):
    """Fast == reference exactly: every outcome, the KV blocks (peak, final, cache entries)
    and the iteration count after one uncut run; then, cut at `fractions` of the busy span,
    the clock, iterations, free/cached blocks and cache entries at every cut."""
    arrival, prompt, output, session = work
    ref = ReferenceScheduler(cost, limits)
    expected = ref.run(arrival, prompt, output, session, prefilled, keys=keys)
    fast = ReplicaScheduler(cost, limits)
    fast.add_many(arrival, prompt, output, session, prefilled, keys)
    fast.run_until(None)
    assert_same(fast.outcome(), expected)
    assert fast.max_used_blocks == ref.max_used_blocks
    assert fast.free_blocks == limits.num_blocks == ref.free_blocks + ref.cached_blocks
    assert list(fast.kv.cache.items()) == list(ref.cache.items())
    assert fast.kv.refs == ref.holders == {}
    assert fast.iteration == ref.iterations
    first, last = int(arrival[0]), int(expected.finish_ns.max())
    cuts = sorted(first + int(f * (last - first)) for f in fractions)
    ref = ReferenceScheduler(cost, limits)
    ref.run(arrival, prompt, output, session, prefilled, snapshot_ns=cuts, keys=keys)
    fast = ReplicaScheduler(cost, limits)
    fast.add_many(arrival, prompt, output, session, prefilled, keys)
    snapshots = []
    for cut in cuts:
        fast.run_until(cut)
        snapshots.append(fast_snapshot(fast))
    fast.run_until(None)
    assert snapshots == ref.snapshots
    assert_same(fast.outcome(), expected)


@EQUIVALENCE
@given(replicas(), workloads(), FRACTIONS)
def test_fast_equals_reference(replica, work, fractions) -> None:
    cost, limits = replica
    assert_matches_reference(cost, limits, work, fractions)


@PRESSURED
@given(pressured(), FRACTIONS)
def test_fast_equals_reference_under_kv_pressure(drawn, fractions) -> None:
    """Bursts on a short KV cache: preemptions, prefix-cache evictions, both at once."""
    (cost, limits), work = drawn
    assert_matches_reference(cost, limits, work, fractions)


@PRESSURED
@given(chained(), FRACTIONS)
def test_block_keys_equal_reference(drawn, fractions) -> None:
    """Hash-chain prefix caching: shared, held and cached blocks, LRU eviction under KV
    pressure, preemption of holders, requests without chains (session rule) mixed in."""
    (cost, limits), work, keys = drawn
    assert_matches_reference(cost, limits, work, fractions, keys=keys)


@SETTINGS
@given(chained(), FRACTIONS, st.data())
def test_block_keys_with_prefilled_equal_reference(drawn, fractions, data) -> None:
    (cost, limits), work, keys = drawn
    wants = data.draw(st.lists(st.booleans(), min_size=len(work[0]), max_size=len(work[0])))
    flags = np.array(wants, dtype=bool) & (work[2] >= 2)
    assert_matches_reference(cost, limits, work, fractions, flags, keys)


@EQUIVALENCE
@given(ANY_WORKLOAD, FRACTIONS, st.data())
def test_prefilled_requests_equal_reference(drawn, fractions, data) -> None:
    """Requests arriving with their prompt's KV (disaggregated decode side)."""
    (cost, limits), work = drawn
    wants = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(work[0]), max_size=len(work[0]))), dtype=bool
    )
    flags = wants & (work[2] >= 2)  # a prefilled request has its first token already
    assert_matches_reference(cost, limits, work, fractions, flags)


@SETTINGS
@given(ANY_WORKLOAD, st.lists(st.integers(0, 2 * 10**10), max_size=8))
def test_windows_do_not_change_results(drawn, cuts) -> None:
    (cost, limits), work = drawn
    whole = run_fast(cost, limits, work)
    windowed = run_fast(cost, limits, work, sorted(cuts))
    assert_same(windowed.outcome(), whole.outcome())
    assert windowed.t_as == whole.t_as and windowed.busy_as == whole.busy_as


@SETTINGS
@given(ANY_WORKLOAD, st.lists(st.integers(1, 2 * 10**10), min_size=1, max_size=8))
def test_incremental_submission(drawn, cuts) -> None:
    """Requests added window by window (as a cell receives them) give the same results."""
    (cost, limits), work = drawn
    whole = run_fast(cost, limits, work)
    sched = ReplicaScheduler(cost, limits)
    arrival, prompt, output, session = work
    start = 0
    for until in [*sorted(cuts), None]:
        stop = len(arrival) if until is None else int(np.searchsorted(arrival, until))
        sched.add_many(
            arrival[start:stop], prompt[start:stop], output[start:stop], session[start:stop]
        )
        start = max(start, stop)
        sched.run_until(until)
    assert_same(sched.outcome(), whole.outcome())
