"""Work follows activity (issue 18): R&R pools with the same host parameters share one cell
group across regions, and the busy ledger accounts periods lazily; neither changes a result.

* a fleet whose regions replicate one pool runs as one `RRHostGroup` (plus one per other
  kind of pool) and gives exactly the results of one group per pool (one shard per pool),
  with host failures evicting requests of several regions from one group;
* the ledger's counters, read at any bound after any sequence of recorded periods, equal
  the direct sum over the periods (busy time clipped at the bound), with failures too;
* a socket's preprocessing state keeps only the cores busy at the latest arrival and gives
  the start times of FCFS over every core.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_simulation import same

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.ledger import FOLD_PARTS, BusyLedger
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.rr import RRHostGroup
from mtia_cluster.engine.rr_kernel import core_start
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.topology import InjectErrors, make_groups

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RANK = {"service": "rank", "model": "lc1", "platform": "mtia-2i-rack", "hosts": 2}
BATCHING = {"max_items": 256, "max_wait_us": 200}


def scenario(policy: str, events: list[dict[str, Any]]) -> Any:
    """Regions a, b, c replicate one pool; region d's pool batches differently."""
    same_pool = {**RANK, "batching": BATCHING}
    regions = [{"name": n, "pools": [same_pool]} for n in "abc"]
    other = {**RANK, "hosts": 1, "batching": {"max_items": 128, "max_wait_us": 100}}
    regions.append({"name": "d", "pools": [other]})
    return parse_scenario(
        {
            "name": "replicated",
            "seed": 5,
            "report_interval_ms": 1,
            "metrics_interval_ms": 2,
            "router": {"policy": policy},
            "regions": regions,
            "events": events,
        }
    )


def trace(seed: int, n: int) -> RequestBatch:
    rng = entity_rng(seed, 61)
    arrival = np.cumsum(rng.integers(0, 20_000, n)).astype(np.int64)
    cols = make_requests(arrival, items=rng.integers(1, 300, n)).columns()
    cols["region"] = rng.integers(0, 4, n).astype(np.int32)
    return RequestBatch(**cols)


def rr_groups(groups: list[Any]) -> list[RRHostGroup]:
    return [g.inner if isinstance(g, InjectErrors) else g for g in groups]


def test_replicated_pools_share_one_group() -> None:
    sim = Simulation(scenario("least_outstanding", []))
    groups = rr_groups(make_groups(sim.topology, list(range(sim.topology.cells))))
    assert sorted(len(g.cell_ids) for g in groups) == [1, 6]


@SETTINGS
@given(
    st.sampled_from(["least_outstanding", "p2c", "round_robin"]),
    st.integers(0, 1000),
    st.integers(1, 500),
    st.booleans(),
)
def test_one_group_for_replicated_pools_gives_per_pool_results(
    policy: str, seed: int, n: int, fail: bool
) -> None:
    events = (
        [{"at_s": 0.003, "kind": "fail", "region": r, "hosts": [1], "on_failure": "retry"}
         for r in "ab"]
        if fail
        else []
    )  # fmt: skip
    sc = scenario(policy, events)
    merged = Simulation(sc).run(trace(seed, n))
    pools = np.asarray(merged.topology.cell_pool)
    per_pool = [np.flatnonzero(pools == p).tolist() for p in range(len(merged.topology.pools))]
    same(merged, Simulation(sc, shards=per_pool).run(trace(seed, n)))


@SETTINGS
@given(st.integers(0, 10_000), st.integers(1, 3 * FOLD_PARTS), st.integers(1, 12))
def test_ledger_counters_are_the_clipped_sums(seed: int, windows: int, servers: int) -> None:
    rng = np.random.default_rng(seed)
    ledger = BusyLedger(np.arange(servers, dtype=np.int32) + 100)
    periods: list[tuple[int, int, int, int]] = []
    t = 0
    for w in range(windows):
        t += int(rng.integers(1, 1000))
        for _ in range(int(rng.integers(0, 4))):  # periods recorded in a window start after t0
            start = t - int(rng.integers(0, 500))
            row = (start, start + int(rng.integers(1, 3000)), int(rng.integers(servers)), 7)
            periods.append(row)
            ledger.add(*(np.array([v]) for v in row))
        ledger.close(t)
        if rng.random() < 0.2 or w == windows - 1:
            got = ledger.counters()
            busy, batches, work = np.zeros((3, servers), dtype=np.int64)
            for start, end, server, units in periods:
                if start < t:
                    busy[server] += min(end, t) - start
                    batches[server] += 1
                    work[server] += units
            assert np.array_equal(got.busy_ns, busy)
            assert np.array_equal(got.batches, batches)
            assert np.array_equal(got.work_units, work)
            assert np.array_equal(got.accelerator_id, np.arange(servers) + 100)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3 * FOLD_PARTS), st.integers(1, 6))
def test_ledger_with_failures_is_the_clipped_sums(seed: int, windows: int, servers: int) -> None:
    """The ledger keeps its periods in one reused buffer, folding ended ones and compacting
    the open ones in place; with failures (`truncate`: periods of failed servers end at the
    failure, later ones vanish) between windows, its counters still equal the direct sums
    over the periods as the failures left them, and the buffer grows past any size."""
    rng = np.random.default_rng(seed)
    ledger = BusyLedger(np.arange(servers, dtype=np.int32))
    periods: list[list[int]] = []
    t = 0
    for w in range(windows):
        t += int(rng.integers(1, 1000))
        k = int(rng.integers(0, 40))  # some windows record more than the buffer holds
        start = t - rng.integers(0, 500, k)
        rows = np.stack([start, start + rng.integers(1, 3000, k), rng.integers(0, servers, k)])
        periods.extend([int(a), int(b), int(c), 3] for a, b, c in rows.T)
        ledger.add(rows[0], rows[1], rows[2], np.full(k, 3))
        ledger.close(t)
        if rng.random() < 0.1:  # some servers fail at the bound
            down = np.flatnonzero(rng.random(servers) < 0.5)
            ledger.truncate(down, t)
            for p in periods:
                if p[2] in down.tolist():
                    p[1] = min(p[1], t) if p[0] < t else p[0]  # later ones: empty, gone
            periods = [p for p in periods if p[1] > p[0]]
        if rng.random() < 0.2 or w == windows - 1:
            got = ledger.counters()
            want = np.zeros((3, servers), dtype=np.int64)
            for s0, e0, server, units in periods:
                if s0 < t:
                    want[:, server] += (min(e0, t) - s0, 1, units)
            assert np.array_equal(np.stack([got.busy_ns, got.batches, got.work_units]), want)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5),
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 120)), min_size=1, max_size=60),
)
def test_core_state_keeps_only_busy_cores(cores: int, jobs: list[tuple[int, int]]) -> None:
    """A socket's preprocessing keeps only the cores still busy at the latest arrival
    (`core_start`); for arrivals that never go back in time its start times are those of
    FCFS over every core's free time (the earliest free core), ties and full sockets
    included; an arrival earlier than the latest is refused."""
    row = np.zeros(cores + 2, dtype=np.int64)
    free = [0] * cores
    t = 0
    for gap, cpu in jobs:
        t += gap
        k = min(range(cores), key=lambda j: free[j])
        want = max(t, free[k])
        free[k] = want + cpu
        assert core_start(row, t, cpu, cores) == want
        assert row[0] == sum(f > t for f in free)  # busy cores only
    with pytest.raises(ValueError):
        core_start(row, t - 1, 1, cores)
