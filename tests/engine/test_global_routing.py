"""Global routing (#16): spill to the nearest region with headroom, RTT in the latency.

Invariants under random traces, outages and thresholds (Hypothesis): every request exactly
once; no request lost to a region outage with ``retry`` while another region is live; a
spilled request's latency includes its RTT; results identical for any sharding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.network import GlobalRoutingSpec, RegionRtt
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import (
    STATUS_OK,
    STATUS_REJECTED,
    RequestBatch,
    make_requests,
    rejected_at_arrival,
)
from mtia_cluster.engine.global_routing import (
    GlobalRouter,
    RegionLoad,
    _place,
    nearest_order,
    spill_counts,
)
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.units import NS_PER_MS, NS_PER_S

REGIONS = ("us-east", "eu-west", "ap-northeast")
RTT_MS = {"us-east": {"eu-west": 80.0, "ap-northeast": 145.0}, "eu-west": {"ap-northeast": 212.0}}


def scenario(
    events: list[dict[str, Any]] | None = None,
    policy: str = "spill",
    threshold: float | None = None,
    servers: tuple[int, ...] = (2, 2, 2),
) -> Any:
    """Three regions of synthetic 1 ms servers; RTTs given (scenario status)."""
    routing: dict[str, Any] = {"policy": policy, "rtt_ms": RTT_MS}
    if threshold is not None:
        routing["spill_outstanding_per_cell"] = threshold
    return parse_scenario(
        {
            "name": "globe",
            "seed": 5,
            "report_interval_ms": 1,
            "metrics_interval_ms": 10,
            "router": {"policy": "least_outstanding"},
            "global_routing": routing,
            "regions": [
                {
                    "name": name,
                    "pools": [
                        {
                            "service": "s",
                            "model": "svc-exp-1ms",
                            "platform": "mtia-2i-rack",
                            "accelerators": k,
                        }
                    ],
                }
                for name, k in zip(REGIONS, servers, strict=True)
            ],
            "events": events or [],
        }
    )


def trace(seed: int, n: int, rate_per_ms: float, unhomed: float = 0.0) -> RequestBatch:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(NS_PER_MS / rate_per_ms, n)).astype(np.int64)
    region = rng.integers(0, len(REGIONS), n)
    region[rng.random(n) < unhomed] = -1
    return make_requests(arrival, region=region)


def outage(region: str, at_s: float, back_s: float | None) -> list[dict[str, Any]]:
    out = [{"at_s": at_s, "kind": "fail", "region": region, "on_failure": "retry"}]
    if back_s is not None:
        out.append({"at_s": back_s, "kind": "repair", "region": region})
    return out


def test_place_prefers_home_then_nearest_with_headroom() -> None:
    rtt = np.array([[0, 80, 145], [80, 0, 212], [145, 212, 0]]) * NS_PER_MS
    order = nearest_order(rtt)
    assert order.tolist() == [[0, 1, 2], [1, 0, 2], [2, 0, 1]]
    live = np.array([[0], [1], [1]])  # region 0 down
    load = np.zeros((3, 1))
    home = np.array([0, 1, 2, -1, -1])
    dest = _place(home, np.zeros(5, dtype=np.int64), live, load, order, np.inf)
    # 0 -> nearest live (1); no-home rows to the least loaded per live cell, counting sends
    assert dest.tolist() == [1, 1, 2, 2, 1]
    # threshold 1 outstanding per cell: region 1 is full after one send, so home 1 spills to
    # the nearest live region with headroom (2; 0 is down); then none has any: home
    svc = np.zeros(3, dtype=np.int64)
    dest = _place(np.array([1, 1, 1]), svc, live, np.zeros((3, 1)), order, 1.0)
    assert dest.tolist() == [1, 2, 1]


def test_no_live_region_is_rejected_not_lost() -> None:
    """Rows no live region can take stay home when it serves them, else go to the lowest
    region serving the service: its router finds no cell and they are rejected."""
    spec = GlobalRoutingSpec("spill", None, RegionRtt(("a", "b"), ((0, 5), (5, 0)), ()))
    g = GlobalRouter(spec, np.array([[False], [True]]))  # only b has cells for the service
    window = make_requests(np.arange(3), region=np.array([0, 1, -1]))
    view = RegionLoad(np.zeros((2, 1), dtype=np.int64), np.zeros((2, 1)))
    placed = g.place(window, view)
    assert placed.region.tolist() == [1, 1, 1]
    rows = rejected_at_arrival(placed)
    out = g.annotate(rows)
    # rejected where reported: no RTT paid, the home kept as origin when there was one
    assert out.region.tolist() == [1, 1, 1]
    assert out.origin_region.tolist() == [0, 1, 1]
    assert out.spill_rtt_ns.tolist() == [0, 0, 0]
    assert np.array_equal(out.finish_ns, rows.finish_ns)
    assert not g.placed  # every record dropped with its final row


def _run(sc: Any, tr: RequestBatch, shards: int = 1, coalesce: bool = True) -> Any:
    return Simulation(sc, shards=shards).run(tr, coalesce_idle=coalesce).requests


def test_region_outage_loses_no_request_with_spill() -> None:
    """The issue's check: a 3-region replay, one region down mid-run, spill on."""
    tr = trace(1, 3000, rate_per_ms=1.5)
    rows = _run(scenario(outage("us-east", 0.5, 1.2)), tr)
    assert sorted(rows.request_id.tolist()) == sorted(tr.request_id.tolist())
    assert np.all(rows.status == STATUS_OK)
    moved = rows.spill_rtt_ns > 0
    assert moved.any()
    assert set(rows.origin_region[moved].tolist()) == {0}  # only us-east's traffic moved
    assert set(rows.region[moved].tolist()) == {1}  # to its nearest region, eu-west (80 ms)
    assert np.all(rows.spill_rtt_ns[moved] == 80 * NS_PER_MS)
    # no fabric in this scenario: a request's network time is exactly the RTT it paid
    np.testing.assert_array_equal(rows.network_ns, rows.spill_rtt_ns)
    assert np.all(rows.finish_ns[moved] - rows.arrival_ns[moved] >= 80 * NS_PER_MS)
    # the same trace with regions as islands rejects us-east's traffic during the outage
    islands = _run(scenario(outage("us-east", 0.5, 1.2), policy="home"), tr)
    assert np.count_nonzero(islands.status == STATUS_REJECTED) > 0
    assert np.all(islands.spill_rtt_ns == 0)


def test_spilled_latency_is_served_latency_plus_rtt() -> None:
    """With an outage and no other load, a spilled request's latency is what the serving
    region took plus exactly the RTT (compare with the same request sent there directly)."""
    tr = make_requests(np.array([2 * NS_PER_MS]), region=np.array([0]))
    spilled = _run(scenario(outage("us-east", 0.0, None)), tr)
    direct = _run(scenario(), make_requests(np.array([2 * NS_PER_MS]), region=np.array([1])))
    assert spilled.region.tolist() == [1] and spilled.origin_region.tolist() == [0]
    lat_spilled = int(spilled.finish_ns[0] - spilled.arrival_ns[0])
    lat_direct = int(direct.finish_ns[0] - direct.arrival_ns[0])
    assert lat_spilled == lat_direct + 80 * NS_PER_MS


def test_threshold_spills_overload_to_the_nearest_region() -> None:
    tr = make_requests(np.arange(400) * 50_000, region=np.zeros(400, dtype=np.int64))  # 20/ms
    rows = _run(scenario(threshold=2.0), tr)
    counts = spill_counts([rows])
    assert counts.get((0, 1), 0) > 0  # overload of us-east goes to eu-west first
    assert np.all(rows.status == STATUS_OK)
    assert len(rows) == 400


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    down=st.sampled_from(REGIONS),
    at_ms=st.integers(0, 400),
    back_ms=st.one_of(st.none(), st.integers(401, 900)),
    threshold=st.one_of(st.none(), st.floats(0.5, 6.0)),
    unhomed=st.sampled_from([0.0, 0.3]),
    shards=st.integers(2, 6),
)
def test_conservation_and_placement_independence(
    seed: int,
    down: str,
    at_ms: int,
    back_ms: int | None,
    threshold: float | None,
    unhomed: float,
    shards: int,
) -> None:
    sc = scenario(
        outage(down, at_ms / 1e3, None if back_ms is None else back_ms / 1e3), "spill", threshold
    )
    tr = trace(seed, 600, rate_per_ms=1.0, unhomed=unhomed)
    one = _run(sc, tr)
    # every request exactly once; none lost (two regions stay live)
    assert sorted(one.request_id.tolist()) == sorted(tr.request_id.tolist())
    assert np.all(one.status == STATUS_OK)
    moved = one.spill_rtt_ns > 0
    assert np.all(one.region[moved] != one.origin_region[moved])
    assert np.all(one.region[~moved] == one.origin_region[~moved])
    assert np.all(one.finish_ns[moved] - one.arrival_ns[moved] > one.spill_rtt_ns[moved])
    # the same results for any sharding of the cells and without idle-window coalescing
    many = _run(sc, tr, shards=shards)
    stepped = _run(sc, tr, coalesce=False)
    for other in (many, stepped):
        for name, col in one.columns().items():
            assert np.array_equal(col, getattr(other, name)), name


def test_islands_unchanged_without_global_routing() -> None:
    """policy home: no spill columns set, rows without a region spread by weight as before."""
    tr = trace(3, 300, rate_per_ms=0.5, unhomed=0.5)
    rows = _run(scenario(policy="home"), tr)
    assert np.all(rows.spill_rtt_ns == 0)
    assert np.array_equal(rows.origin_region, rows.region)
    assert np.all(rows.region >= 0)


@pytest.mark.parametrize("level", ["region"])
def test_drawn_region_failures_spill(level: str) -> None:
    """`failures: [{level: region}]` draws whole-region outages; with spill nothing is lost."""
    sc = parse_scenario(
        {
            **scenario().raw,
            "failures": [
                {
                    "level": level,
                    "region": "eu-west",
                    "mtbf_s": 0.3,
                    "mttr_s": 0.2,
                    "horizon_s": 1.0,
                }
            ],
        }
    )
    sim = Simulation(sc)
    assert any(len(e.cells) == 2 for e in sim.events.events)  # both of eu-west's servers
    tr = trace(4, 1500, rate_per_ms=1.0)
    rows = sim.run(tr).requests
    assert np.all(rows.status == STATUS_OK) and len(rows) == len(tr)
    assert np.any(rows.spill_rtt_ns > 0)
    assert rows.arrival_ns.max() < 2 * NS_PER_S
