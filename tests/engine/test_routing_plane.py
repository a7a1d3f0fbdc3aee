"""The routing plane (engine/routing.py) and the loop's hooks (engine/windows.py).

The plane routes each request to a cell of its own region and service, takes the reports
of the shards it is handed, and a plane built for a region shard (its cells' capacities
only, no other cell built) routes exactly as the whole fleet's plane; the window loop with
default hooks consumes a trace and calls out only through its hooks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.models import POLICIES
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.shard import Shard
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.topology import make_groups
from mtia_cluster.engine.windows import EventHooks, LoopHooks, LoopState, run_windows

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scenario(policy: str, seed: int = 1) -> Any:
    """Two regions: rank + syn in `a`, rank only in `b` (syn requests of `b` are unserved)."""
    rank = {"service": "rank", "model": "lc1", "platform": "mtia-2i-rack"}
    batching = {"max_items": 256, "max_wait_us": 200}
    syn = {"service": "syn", "model": "svc-exp-1ms", "platform": "mtia-2i-rack"}
    return parse_scenario(
        {
            "name": "plane",
            "seed": seed,
            "report_interval_ms": 1,
            "metrics_interval_ms": 4,
            "router": {"policy": policy},
            "regions": [
                {
                    "name": "a",
                    "weight": 2,
                    "pools": [
                        {**rank, "hosts": 2, "batching": batching},
                        {**syn, "accelerators": 4, "accelerators_per_replica": 2},
                    ],
                },
                {"name": "b", "weight": 1, "pools": [{**rank, "hosts": 1, "batching": batching}]},
            ],
        }
    )


def trace(seed: int, n: int) -> RequestBatch:
    """Arrivals ~20 us apart; services 0/1, regions -1/0/1 at random."""
    rng = entity_rng(seed, 98)
    arrival = np.cumsum(rng.integers(0, 40_000, n)).astype(np.int64)
    cols = make_requests(arrival, items=rng.integers(1, 300, n)).columns()
    cols["service"] = rng.integers(0, 2, n).astype(np.int32)
    cols["region"] = rng.integers(-1, 2, n).astype(np.int32)
    cols["input_tokens"] = np.where(cols["service"] == 1, 100, 0).astype(np.int32)
    cols["output_tokens"] = np.where(cols["service"] == 1, 10, 0).astype(np.int32)
    return RequestBatch(**cols)


@SETTINGS
@given(st.sampled_from(sorted(POLICIES)), st.integers(0, 10_000), st.integers(0, 300))
def test_route_stays_in_the_request_region_and_service(policy: str, seed: int, n: int) -> None:
    sim = Simulation(scenario(policy, seed))
    plane = sim.plane
    tr = plane.assign_regions(trace(seed, n))
    assert np.all(tr.region >= 0)
    served = plane.served(tr)
    pairs = set(plane.routers)
    want = [(int(r), int(s)) in pairs for r, s in zip(tr.region, tr.service, strict=True)]
    assert served.tolist() == want
    rows = tr.take(served)
    cell = plane.route(rows)
    assert np.array_equal(np.asarray(sim.topology.cell_region)[cell], rows.region)
    assert np.array_equal(np.asarray(sim.topology.cell_service)[cell], rows.service)


@SETTINGS
@given(st.integers(0, 10_000), st.integers(1, 200))
def test_assign_regions_fills_only_missing_regions_deterministically(seed: int, n: int) -> None:
    plane = Simulation(scenario("round_robin", seed)).plane
    tr = trace(seed, n)
    a, b = plane.assign_regions(tr), plane.assign_regions(tr)
    assert np.array_equal(a.region, b.region)
    given_region = tr.region >= 0
    assert np.array_equal(a.region[given_region], tr.region[given_region])
    # syn is served only in region a: a request without a region always lands there
    assert np.all(a.region[~given_region & (tr.service == 1)] == 0)


def test_refresh_takes_every_report_then_refreshes_each_router_once() -> None:
    plane = Simulation(scenario("least_outstanding")).plane
    cells = np.arange(plane.topology.cells, dtype=np.int64)
    load = (cells * 7) % 5
    none = np.zeros(0, np.int64)
    half = len(cells) // 2
    plane.refresh(
        [
            (cells[:half], load[:half], np.ones(half), none, none, none.astype(np.int8)),
            (cells[half:], load[half:], np.full(len(cells) - half, 2.0), none, none, none),
        ]
    )
    assert np.array_equal(plane.outstanding, load)
    for router in plane.routers.values():
        assert np.array_equal(router.state.outstanding, load[router.cells])
        assert not router.state.sent.any()
        assert np.array_equal(router.state.capacity, plane.capacity[router.cells])


@SETTINGS
@given(st.sampled_from(["least_outstanding", "p2c", "weighted"]), st.integers(0, 10_000))
def test_a_region_shard_plane_routes_as_the_whole_fleet_plane(policy: str, seed: int) -> None:
    """The plane a region shard builds (capacities of its own cells only) routes its
    regions' requests exactly as the whole fleet's plane, window after window."""
    sim = Simulation(scenario(policy, seed))
    cells_a = np.flatnonzero(np.asarray(sim.topology.cell_region) == 0).tolist()
    shard = Shard(make_groups(sim.topology, cells_a))
    region_plane = RoutingPlane(sim.scenario, sim.topology, shard.groups)
    tr = sim.plane.assign_regions(trace(seed, 200))
    tr = tr.take((tr.region == 0) & sim.plane.served(tr))
    rng = entity_rng(seed, 5)
    for rows in np.array_split(np.arange(len(tr)), 5):
        window = tr.take(rows)
        assert np.array_equal(sim.plane.route(window), region_plane.route(window))
        load = rng.integers(0, 9, len(cells_a))
        report = (np.array(cells_a), load, sim.plane.capacity[cells_a], *_no_prefix())
        sim.plane.refresh([report])
        region_plane.refresh([report])


def _no_prefix() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)


@SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 120), st.booleans())
def test_default_hooks_route_every_row_once(seed: int, n: int, coalesce: bool) -> None:
    """The loop with only an advance hook: each served row reaches `advance` once, in its
    window, and the loop ends at the first boundary after the last arrival's window."""
    plane = Simulation(scenario("round_robin", seed)).plane
    tr = plane.assign_regions(trace(seed, n))
    tr = tr.take(plane.served(tr))
    seen: list[np.ndarray] = []

    def advance(arrivals: RequestBatch, cell: np.ndarray, until_ns: int) -> tuple:
        assert np.all(arrivals.arrival_ns < until_ns)
        seen.append(arrivals.request_id)
        return ()

    state = run_windows(plane, tr, LoopState(), LoopHooks(advance, coalesce_idle=coalesce))
    got = np.concatenate([np.zeros(0, np.int64), *seen])
    assert np.array_equal(got, tr.request_id)
    step = plane.scenario.report_interval_ns
    assert state.lo == len(tr)
    assert state.t == ((int(tr.arrival_ns[-1]) // step + 1) * step if len(tr) else 0)


def test_loop_stops_at_the_epoch_bound_and_resumes() -> None:
    plane = Simulation(scenario("round_robin")).plane
    tr = plane.assign_regions(trace(3, 200))
    tr = tr.take(plane.served(tr))
    windows: list[int] = []
    hooks = LoopHooks(lambda a, c, until_ns: windows.append(until_ns) or (), stop_ns=2_000_000)
    state = run_windows(plane, tr, LoopState(), hooks)
    assert 0 < state.lo < len(tr) and state.t >= 2_000_000
    assert all(u <= state.t for u in windows)
    hooks.stop_ns = None
    run_windows(plane, tr, state, hooks)
    assert state.lo == len(tr)


def test_a_router_without_cells_needs_fleet_event_hooks() -> None:
    """A -1 from routing without fleet events is a bug (the default hooks refuse it); with
    events the rows go to `unroutable`."""
    plane = Simulation(scenario("round_robin")).plane
    tr = plane.assign_regions(trace(1, 40))
    tr = tr.take(plane.served(tr))
    for router in plane.routers.values():
        router.set_available(router.cells, False)
    try:
        run_windows(plane, tr, LoopState(), LoopHooks())
    except RuntimeError:
        pass
    else:
        raise AssertionError("the default hooks accepted a request routed nowhere")
    lost: list[RequestBatch] = []
    run_windows(plane, tr, LoopState(), LoopHooks(events=EventHooks(unroutable=lost.append)))
    assert sum(len(b) for b in lost) == len(tr)
