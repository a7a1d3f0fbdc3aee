"""Closed-form decode runs against plain sums (Hypothesis), and input checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import replicas
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.llm.kvstats import decode_run_token_as
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.llm.stretch import DecodeRun, decode_run


@settings(max_examples=300, deadline=None)
@given(replicas(), st.integers(1, 24), st.integers(0, 10**6), st.integers(1, 400), st.data())
def test_decode_run_sums_and_deadline_search(replica, n, context0, limit, data) -> None:
    cost, _ = replica
    n = min(n, cost.max_tokens)
    run = DecodeRun(cost, n, context0)
    durations = [
        cost.duration_as(n, context0 + n * i, context0 + n * (i + 1)) for i in range(limit)
    ]
    assert [run.duration(i) for i in range(limit)] == durations
    # plain Python integers: durations past int64 (but within uint64) made numpy mix int64
    # and uint64 into float64 here, and the exact sums looked wrong
    starts = [0]
    for d in durations:
        starts.append(starts[-1] + d)
    assert all(run.total(j) == starts[j] for j in range(limit + 1))
    deadline = data.draw(st.integers(1, int(starts[-1]) + 10))
    assert run.starts_before(limit, deadline) == sum(1 for s in starts[:limit] if s < deadline)


def test_arrivals_out_of_order_are_refused() -> None:
    from standin import StandInModel

    from mtia_cluster.engine.llm.costs import probe_iteration_cost
    from mtia_cluster.engine.llm.limits import ReplicaLimits

    sched = ReplicaScheduler(
        probe_iteration_cost(StandInModel(), 64), ReplicaLimits(64, 8, 16, 4096)
    )
    with pytest.raises(ValueError, match="non-decreasing"):
        sched.add_many(np.array([5, 3]), np.array([10, 10]), np.array([2, 2]))
    sched.add_many(np.array([5]), np.array([10]), np.array([2]))
    with pytest.raises(ValueError, match="non-decreasing"):
        sched.add_many(np.array([4]), np.array([10]), np.array([2]))
    with pytest.raises(ValueError, match="prefilled"):
        sched.add_many(np.array([6]), np.array([10]), np.array([1]), None, np.array([True]))
    assert len(sched.prompt) == 1  # refused batches leave no trace
    sched.run_until(None)
    assert sched.outcome().finish_ns[0] > 5


@settings(max_examples=300, deadline=None)
@given(
    replicas(),
    st.integers(1, 24),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(1, 400),
    st.data(),
)
def test_fused_decode_run_equals_its_parts(replica, n, context0, held0, limit, data) -> None:
    """The scheduler's one-pass `decode_run` gives what DecodeRun's separate sums give."""
    cost, _ = replica
    n = min(n, cost.max_tokens)
    run = DecodeRun(cost, n, context0)
    deadline = data.draw(st.one_of(st.none(), st.integers(1, run.total(limit) + 10)))
    k = limit if deadline is None else run.starts_before(limit, deadline)
    span = run.total(k)
    assert decode_run(cost, n, context0, held0, limit, deadline) == (
        k,
        span,
        decode_run_token_as(run, held0, n, k, span),
        run.memory_total(k, span),
        run.memory_bound(k - 1),
    )
