"""The fast scheduler equals the one-iteration-at-a-time reference, window cuts included."""

from __future__ import annotations

import numpy as np
from conftest import replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.llm._reference import ReferenceScheduler
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


@SETTINGS
@given(replicas(), workloads())
def test_fast_equals_reference(replica, work) -> None:
    cost, limits = replica
    ref = ReferenceScheduler(cost, limits)
    expected = ref.run(*work)
    fast = run_fast(cost, limits, work)
    assert_same(fast.outcome(), expected)
    assert fast.max_used_blocks == ref.max_used_blocks
    assert fast.free_blocks == limits.num_blocks == ref.free_blocks + ref.cached_blocks
    assert list(fast.kv.cache.items()) == list(ref.cache.items())


@SETTINGS
@given(replicas(), workloads(), st.data())
def test_prefilled_requests_equal_reference(replica, work, data) -> None:
    """Requests arriving with their prompt's KV (disaggregated decode side)."""
    cost, limits = replica
    wants = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(work[0]), max_size=len(work[0]))), dtype=bool
    )
    flags = wants & (work[2] >= 2)  # a prefilled request has its first token already
    ref = ReferenceScheduler(cost, limits)
    arrival, prompt, output, session = work
    expected = ref.run(arrival, prompt, output, session, flags)
    fast = ReplicaScheduler(cost, limits)
    fast.add_many(arrival, prompt, output, session, flags)
    fast.run_until(None)
    assert_same(fast.outcome(), expected)
    assert fast.max_used_blocks == ref.max_used_blocks
    assert fast.free_blocks == limits.num_blocks == ref.free_blocks + ref.cached_blocks
    assert list(fast.kv.cache.items()) == list(ref.cache.items())


@SETTINGS
@given(replicas(), workloads(), st.lists(st.integers(0, 2 * 10**10), max_size=8))
def test_windows_do_not_change_results(replica, work, cuts) -> None:
    cost, limits = replica
    whole = run_fast(cost, limits, work)
    windowed = run_fast(cost, limits, work, sorted(cuts))
    assert_same(windowed.outcome(), whole.outcome())
    assert windowed.t_as == whole.t_as and windowed.busy_as == whole.busy_as


@SETTINGS
@given(replicas(), workloads(), st.lists(st.integers(1, 2 * 10**10), min_size=1, max_size=8))
def test_incremental_submission(replica, work, cuts) -> None:
    """Requests added window by window (as a cell receives them) give the same results."""
    cost, limits = replica
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
