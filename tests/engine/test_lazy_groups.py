"""Lazy advancing with every kind of group (engine/shard.py): R&R host groups, synthetic
servers and LLM replicas in one fleet. Idle groups are skipped and LLM replicas are skipped
up to their ``quiet_until``; a replay must equal advancing every group in every report
interval (`Shard.lazy = False`, `coalesce_idle=False`): every request's row, the run's end
and every device-counter sample."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_report_windows import scenario, trace

from mtia_cluster.engine.simulation import Simulation


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["least_outstanding", "round_robin", "p2c"]),
    st.integers(0, 1000),
    st.integers(1, 60),
)
def test_lazy_groups_equal_advancing_every_group(policy: str, seed: int, n: int) -> None:
    sc, tr = scenario(policy, seed), trace(seed, n)
    lazy = Simulation(sc).run(tr)
    eager = Simulation(sc)
    for shard in eager.shards:
        shard.lazy = False
    every = eager.run(tr, coalesce_idle=False)
    for name, col in lazy.requests.columns().items():
        assert np.array_equal(col, every.requests.columns()[name]), name
    assert lazy.end_ns == every.end_ns
    assert [t for t, _ in lazy.samples] == [t for t, _ in every.samples]
    for (_, a), (_, b) in zip(lazy.samples, every.samples, strict=True):
        for name, col in a.columns().items():
            assert np.array_equal(col, b.columns()[name]), name
