"""FCFS kernels and the synthetic cell: exact against plain loops, and window-cut invariant."""

from __future__ import annotations

import heapq

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.cell import Completed, make_requests
from mtia_cluster.engine.queueing import fcfs_servers, heap_from_free, max_plus_scan
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.synthetic import SyntheticCell

jobs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 50), min_size=n, max_size=n),
        st.lists(st.integers(1, 200), min_size=n, max_size=n),
    )
)


def loop_starts(arrival: list[int], service: list[int], free: list[int]) -> list[int]:
    """Textbook c-server FCFS: each job takes the earliest free server."""
    free = list(free)
    out = []
    for a, s in zip(arrival, service, strict=True):
        k = min(range(len(free)), key=lambda j: free[j])
        t = max(a, free[k])
        free[k] = t + s
        out.append(t)
    return out


@settings(max_examples=200, deadline=None)
@given(jobs, st.lists(st.integers(0, 300), min_size=1, max_size=8))
def test_fcfs_kernels_match_the_loop(job: tuple[list[int], list[int]], free: list[int]) -> None:
    gaps, service = job
    arrival = np.cumsum(gaps).astype(np.int64)
    s = np.array(service, dtype=np.int64)
    want = loop_starts(arrival.tolist(), service, free)
    heap = heap_from_free(np.array(free, dtype=np.int64))
    start2, _ = fcfs_servers(arrival, s, heap)
    assert start2.tolist() == want
    # the server state continues exactly: one more job after the batch
    later = int(arrival[-1]) + 1
    nxt, _ = fcfs_servers(np.array([later]), np.array([5]), heap)
    assert nxt.tolist() == loop_starts([*arrival.tolist(), later], [*service, 5], free)[-1:]
    if len(free) == 1:
        st1, _ = max_plus_scan(arrival, s, free[0])
        assert st1.tolist() == want


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),
    st.sampled_from(["deterministic", "exponential", "lognormal"]),
    st.lists(st.integers(1, 5_000_000), max_size=6),
    st.integers(0, 10),
)
def test_synthetic_cell_is_window_invariant(c: int, dist: str, cuts: list[int], seed: int) -> None:
    rng = entity_rng(seed, 5)
    arrival = np.cumsum(rng.integers(0, 400_000, 200)).astype(np.int64)
    req = make_requests(arrival)

    def run(bounds: list[int]) -> Completed:
        cell = SyntheticCell(
            accelerator_ids=np.arange(c),
            host_id=0,
            rng=entity_rng(seed, 3, 0),
            distribution=dist,
            mean_s=1e-3,
            cv=1.5,
        )
        parts, lo = [], 0
        for b in [*bounds, 1 << 60]:
            hi = int(np.searchsorted(arrival, b))
            cell.submit(req.take(slice(lo, hi)))
            lo = hi
            parts.append(cell.advance(b))
        assert cell.report().outstanding == 0
        done = Completed.concat(parts)
        return done.take(np.argsort(done.request_id))

    one, many = run([]), run(sorted(set(cuts)))
    for name, col in one.columns().items():
        assert np.array_equal(col, many.columns()[name]), name
    assert np.all(one.start_ns >= one.arrival_ns)


def test_heap_reference_is_the_textbook_order() -> None:
    heap = heap_from_free(np.array([5, 0, 0]))
    start, server = fcfs_servers(np.array([1, 1, 1, 1]), np.array([10, 10, 10, 10]), heap)
    assert start.tolist() == [1, 1, 5, 11] and server.tolist() == [1, 2, 0, 1]
    assert heapq.nsmallest(1, heap)[0] >> 2 == 11  # 3 servers: index in the low 2 bits
