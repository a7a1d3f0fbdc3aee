"""Least-loaded selection (engine/least_loaded.py) equals the full-sort selection it replaced.

The oracle is the former kernel in plain Python: sort every candidate's key
``load * k + index``, then pop the minimum and push it back one request heavier, request by
request. The new kernels heap only the candidates that can receive a request, build the heap
bottom-up, and route every router of a plane in one call; the choices must be identical,
ties included (many equal loads below), and the plane must count each choice once.
"""

from __future__ import annotations

import copy
import heapq
import pickle
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.least_loaded import least_loaded, route_ranges
from mtia_cluster.engine.simulation import Simulation

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def full_sort_selection(load: list[int], n: int) -> list[int]:
    """The former `_least_loaded`: a sorted array of every key is a min-heap; n pops."""
    k = len(load)
    heap = sorted(v * k + j for j, v in enumerate(load))
    out = []
    for _ in range(n):
        key = heap[0]
        out.append(key % k)
        heapq.heapreplace(heap, key + k)
    return out


loads = st.one_of(
    st.lists(st.integers(0, 3), min_size=1, max_size=40),  # many ties
    st.lists(st.integers(0, 10_000), min_size=1, max_size=40),  # wide spread
    st.lists(st.sampled_from([0, 7, 1_000_000]), min_size=1, max_size=40),
)


@SETTINGS
@given(loads, st.integers(0, 200))
def test_least_loaded_equals_the_full_sort(load: list[int], n: int) -> None:
    got = least_loaded(np.array(load, dtype=np.int64), n)
    assert got.dtype == np.int64
    assert got.tolist() == full_sort_selection(load, n)


@st.composite
def plane_windows(draw: Any) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray, np.ndarray]:
    """Routers over disjoint contiguous cell ranges (gaps allowed), reports, sent counts
    and a window of rows (router index per row, in arrival order)."""
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=6))
    ranges, at = [], 0
    for size in sizes:
        at += draw(st.integers(0, 3))  # cells of no router in between
        ranges.append((at, at + size))
        at += size
    outstanding = np.array(draw(st.lists(st.integers(0, 4), min_size=at, max_size=at)), np.int64)
    sent = np.array(draw(st.lists(st.integers(0, 2), min_size=at, max_size=at)), np.int64)
    rows = draw(st.lists(st.integers(0, len(sizes) - 1), max_size=120))
    return ranges, outstanding, sent, np.array(rows, dtype=np.int64)


@SETTINGS
@given(plane_windows())
def test_route_ranges_equals_each_router_alone(case: Any) -> None:
    ranges, outstanding, sent, router = case
    lo = np.array([a for a, _ in ranges], dtype=np.int64)
    hi = np.array([b for _, b in ranges], dtype=np.int64)
    want = np.full(len(router), -1, dtype=np.int64)
    for r, (a, b) in enumerate(ranges):
        rows = np.flatnonzero(router == r)
        load = (outstanding[a:b] + sent[a:b]).tolist()
        want[rows] = a + np.array(full_sort_selection(load, len(rows)), dtype=np.int64)
    before = sent.copy()
    cell = np.empty(len(router), dtype=np.int64)
    route_ranges(router, lo, hi, outstanding, sent, cell)
    assert cell.tolist() == want.tolist()
    assert np.array_equal(sent - before, np.bincount(want, minlength=len(sent)))  # counted once


def fleet_doc(regions: int, hosts: int, interleaved: bool = False) -> dict[str, Any]:
    """`regions` regions of one R&R pool of `hosts` hosts each, least_outstanding;
    `interleaved`: a synthetic pool and one more R&R host follow in each region, so the R&R
    router's cells are not one contiguous range of ids."""
    pool = {"service": "rank", "model": "lc1", "platform": "mtia-2i-rack", "hosts": hosts}
    syn = {"service": "syn", "model": "svc-exp-1ms", "platform": "mtia-2i-rack", "accelerators": 2}
    pools = [pool, {**syn, "accelerators_per_replica": 1}, {**pool, "hosts": 1}]
    return {
        "name": "least-loaded",
        "seed": 2,
        "report_interval_ms": 1,
        "metrics_interval_ms": 4,
        "router": {"policy": "least_outstanding"},
        "regions": [
            {"name": f"r{i}", "pools": pools if interleaved else [pool]} for i in range(regions)
        ],
    }


def fleet(regions: int, hosts: int, interleaved: bool = False) -> Any:
    return parse_scenario(fleet_doc(regions, hosts, interleaved))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.integers(1, 4), st.booleans(), st.integers(0, 10_000))
def test_the_plane_routes_each_window_as_request_by_request_argmin(
    regions: int, hosts: int, interleaved: bool, seed: int
) -> None:
    """Window after window with random reports: each row goes to the argmin of (reported +
    sent since, index) among its region's cells of its service, counted at once (one call
    for all routers, or router by router when some router's cells are not contiguous);
    reports clear the counts."""
    plane = Simulation(fleet(regions, hosts, interleaved)).plane
    services = len(plane.services)
    rng = np.random.default_rng(seed)
    cells = np.arange(plane.topology.cells, dtype=np.int64)
    key_of = np.asarray(plane.topology.cell_region) * services + plane.topology.cell_service
    none = np.zeros(0, np.int64)
    for _ in range(4):
        n = int(rng.integers(0, 40))
        window = make_requests(
            np.zeros(n, np.int64),
            region=rng.integers(0, regions, n),
            service=rng.integers(0, services, n),
        )
        load = plane.reported.copy()
        want = []
        for r, s in zip(window.region.tolist(), window.service.tolist(), strict=True):
            mine = cells[key_of == r * services + s]
            c = int(mine[np.argmin(load[mine])])  # argmin: lowest index among ties
            load[c] += 1
            want.append(c)
        assert plane.route(window).tolist() == want
        for router in plane.routers.values():  # each router counted what it sent
            state = router.state
            assert np.array_equal(state.outstanding + state.sent, load[router.cells])
        report = rng.integers(0, 3, len(cells))
        plane.refresh([(cells, report, plane.capacity.copy(), none, none, none.astype(np.int8))])
        assert np.array_equal(plane.reported, report) and not plane.sent.any()
        for router in plane.routers.values():  # the routers read the same reports
            assert np.array_equal(router.state.outstanding, report[router.cells])
            assert not router.state.sent.any()


def _windows(plane: Any, seed: int, count: int) -> list[tuple[Any, np.ndarray]]:
    """Random windows of rows and the reports that follow each."""
    rng = np.random.default_rng(seed)
    regions = len(plane.regions)
    out = []
    for _ in range(count):
        n = int(rng.integers(0, 30))
        rows = make_requests(np.zeros(n, np.int64), region=rng.integers(0, regions, n))
        out.append((rows, rng.integers(0, 4, plane.topology.cells)))
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["least_outstanding", "p2c"]), st.integers(0, 10_000))
def test_a_restored_plane_routes_as_the_original(policy: str, seed: int) -> None:
    """A checkpoint (saved_state, pickled) restored into a fresh plane routes as the plane
    it was taken from: the unpickled routers read the new plane's reports again."""
    scn = parse_scenario({**fleet_doc(2, 3), "router": {"policy": policy}})
    plane = Simulation(scn).plane
    none = np.zeros(0, np.int64)

    def step(p: Any, rows: Any, report: np.ndarray) -> list[int]:
        cell = p.route(rows).tolist()
        cells = np.arange(len(report), dtype=np.int64)
        p.refresh([(cells, report, p.capacity.copy(), none, none, none.astype(np.int8))])
        return cell

    windows = _windows(plane, seed, 6)
    for rows, report in windows[:3]:
        step(plane, rows, report)
    restored = Simulation(scn).plane
    restored.restore_state(pickle.loads(pickle.dumps(plane.saved_state())))
    for rows, report in windows[3:]:
        assert step(restored, rows, report) == step(plane, rows, report)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.integers(1, 4), st.integers(0, 10_000))
def test_the_plane_routes_p2c_as_each_router_alone(regions: int, hosts: int, seed: int) -> None:
    """p2c in one compiled call (each router drawing from its own stream first) makes the
    choices of `Router.route` called router by router on copies of the same routers."""
    plane = Simulation(parse_scenario({**fleet_doc(regions, hosts), "router": {"policy": "p2c"}}))
    plane = plane.plane
    rng = np.random.default_rng(seed)
    cells = np.arange(plane.topology.cells, dtype=np.int64)
    none = np.zeros(0, np.int64)
    for _ in range(4):
        n = int(rng.integers(0, 40))
        window = make_requests(np.zeros(n, np.int64), region=rng.integers(0, regions, n))
        alone = copy.deepcopy(plane.routers)  # streams and reports as they are now
        want = np.full(n, -1, dtype=np.int64)
        for (r, _), router in alone.items():
            rows = np.flatnonzero(window.region == r)
            want[rows] = router.route(len(rows))
        assert plane.route(window).tolist() == want.tolist()
        for key, router in plane.routers.items():  # same streams and counts afterwards
            assert np.array_equal(router.state.sent, alone[key].state.sent)
            assert router.state.rng.random() == alone[key].state.rng.random()
        report = rng.integers(0, 3, len(cells))
        plane.refresh([(cells, report, plane.capacity.copy(), none, none, none.astype(np.int8))])
