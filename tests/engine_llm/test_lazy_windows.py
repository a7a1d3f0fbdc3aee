"""Lazy advancing of LLM replicas and the coalesced drain (engine/shard.py, engine/windows.py).

A shard skips a replica that receives nothing in a window ending by its ``quiet_until()``
(the earliest time one of its requests may finish), and after the last arrival the window
loop runs on to the first boundary by which some request may have finished. Both must be
invisible: the bound must be sound (no request of the replica, left alone, finishes before
it), and a replay must give exactly what advancing every replica in every report interval
gives (every request's row, the run's end, every device-counter sample, the fleet-event
log), with fleet events, prefix caching, disaggregated pools and several shards.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from conftest import pressured, replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_llm_fleet_events import events_strategy, llm_trace
from test_llm_fleet_events import scenario as events_scenario

from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.simulation import Simulation

END_NS = 10**16  # past every finish


def cell_of(cost: Any, limits: Any) -> LLMReplicaCell:
    return LLMReplicaCell(
        ReplicaScheduler(cost, limits), accelerator_ids=np.array([0]), host_id=0, compact_after=2
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.tuples(replicas(), workloads()), pressured()),
    st.lists(st.integers(1, 3 * 10**10), min_size=1, max_size=10),
)
def test_quiet_until_is_a_sound_bound(drawn: Any, cuts: list[int]) -> None:
    """After any advance, the replica left alone (nothing submitted) returns no request
    before its bound; with a prefix cache or work not yet decoding the bound is None."""
    (cost, limits), (arrival, prompt, output, session) = drawn
    cell = cell_of(cost, limits)
    batch = make_requests(
        arrival, input_tokens=prompt, output_tokens=output, items=0, session_id=session
    )
    start = 0
    for until in sorted({*cuts, int(arrival[-1]) + 1}):
        stop = int(np.searchsorted(arrival, until))
        cell.submit(batch.take(slice(start, stop)))
        start = stop
        cell.advance(until)
        quiet = cell.quiet_until()
        if quiet is None:
            continue
        assert not limits.prefix_caching
        alone = copy.deepcopy(cell)
        rest = alone.advance(END_NS)
        assert alone.report().outstanding == 0  # every request returned
        assert np.all(rest.finish_ns >= quiet), (rest.finish_ns.min(), quiet)


POOLS: dict[str, dict[str, Any]] = {
    "tp2-x8": {"accelerators": 16, "tp": 2},
    "tp8-x3-prefix": {"accelerators": 24, "tp": 8, "prefix_caching": True},
    "disagg-x2": {
        "accelerators": 16,
        "accelerators_per_replica": 8,
        "disaggregation": {"prefill_accelerators": 4},
    },
}


def scenario(pool: dict[str, Any], events: list[dict[str, Any]], policy: str) -> Any:
    """One region, 5 ms reports, 200 ms metrics (so windows merge and the drain jumps)."""
    return events_scenario(
        pool, events, policy, name="lazy-windows", seed=3, report_ms=5, metrics_ms=200
    )


def stepped(sim: Simulation, trace: Any) -> RunOutput:
    """Every replica advanced in every report interval (no laziness, no coalescing)."""
    for shard in sim.shards:
        shard.lazy = False
    return sim.run(trace, coalesce_idle=False)


def assert_same_run(a: RunOutput, b: RunOutput) -> None:
    for name, col in a.requests.columns().items():
        assert np.array_equal(col, b.requests.columns()[name]), name
    assert a.end_ns == b.end_ns
    assert a.fleet_events == b.fleet_events
    assert [t for t, _ in a.samples] == [t for t, _ in b.samples]
    for (_, x), (_, y) in zip(a.samples, b.samples, strict=True):
        for name, col in x.columns().items():
            assert np.array_equal(col, y.columns()[name]), name


@st.composite
def pool_and_events(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    name = draw(st.sampled_from(sorted(POOLS)))
    return name, draw(events_strategy(POOLS[name]["accelerators"] // 8))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pool_and_events(),
    st.sampled_from(["least_outstanding", "p2c", "session_affinity"]),
    st.integers(0, 10**6),
    st.integers(5, 90),
    st.sampled_from([1, 4]),
)
def test_lazy_replay_equals_stepping_every_replica(
    drawn: tuple[str, list[dict[str, Any]]], policy: str, seed: int, n: int, slow: int
) -> None:
    """Lazy replicas + coalesced drain == every replica stepped every interval, in one and
    in several shards; `slow` stretches the arrivals (sparse traces merge more windows)."""
    name, events = drawn
    tr = llm_trace(seed, n)
    tr = make_requests(
        tr.arrival_ns * slow,
        items=0,
        input_tokens=tr.input_tokens,
        output_tokens=tr.output_tokens,
        session_id=tr.session_id,
    )
    sc = scenario(POOLS[name], events, policy)
    lazy = Simulation(sc).run(tr)
    assert_same_run(lazy, stepped(Simulation(sc), tr))
    assert_same_run(lazy, Simulation(sc, shards=2).run(tr))
