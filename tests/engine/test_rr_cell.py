"""The vectorized R&R hosts against an event-by-event oracle, on random inputs.

Hypothesis draws several hosts simulated together, arrivals (with ties), items, CPU cost,
batching limits, server occupancy tables and window cuts; every request must get exactly the
oracle's start, finish, server and batch size (the oracle runs each socket alone), whatever
the window cuts and however many hosts share the group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_rr import simulate_socket

from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.rr import RRHostGroup, RRHostParams, ServiceTable
from mtia_cluster.engine.rr_kernel import form_batches


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 80))
    gaps = draw(st.lists(st.integers(0, 400), min_size=n, max_size=n))
    items = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    hosts = draw(st.integers(1, 3))
    return {
        "hosts": hosts,
        "host": np.array(draw(st.lists(st.integers(0, hosts - 1), min_size=n, max_size=n))),
        "arrival": np.cumsum(gaps).astype(np.int64),
        "items": np.array(items, dtype=np.int32),
        "sockets": draw(st.integers(1, 2)),
        "cores": draw(st.integers(1, 4)),
        "servers": draw(st.integers(1, 3)),
        "group": draw(st.sampled_from([1, 2])),
        "cpu_ns": draw(st.sampled_from([0.0, 3.0, 17.5, 90.0])),
        "max_items": draw(st.integers(1, 20)),
        "max_wait": draw(st.integers(0, 600)),
        "svc_base": draw(st.integers(1, 500)),
        "svc_per_item": draw(st.integers(0, 60)),
        "cuts": sorted(draw(st.lists(st.integers(1, 30_000), max_size=8))),
    }


def make_group(sc: dict, policy: Any = None) -> RRHostGroup:
    """The scenario's hosts (global host ids from 5, accelerator ids from 100)."""
    g = sc["group"]
    params = RRHostParams(
        sockets=sc["sockets"],
        cores_per_socket=sc["cores"],
        accelerators_per_socket=sc["servers"] * g,
        group=g,
        max_items=sc["max_items"],
        max_wait_ns=sc["max_wait"],
        cpu_s_per_item=sc["cpu_ns"] / 1e9,
    )
    table = ServiceTable.build(lambda b: (sc["svc_base"] + sc["svc_per_item"] * b) / 1e9, 4)
    per_host = sc["sockets"] * sc["servers"] * g
    return RRHostGroup(
        params=params,
        table=table,
        host_ids=np.arange(sc["hosts"]) + 5,
        accelerator_ids=np.arange(100, 100 + per_host * sc["hosts"]),
        policy=policy,
    )


def run_cell(sc: dict) -> tuple[RequestBatch, dict[int, tuple[int, int, int, int]]]:
    g = sc["group"]
    per_host = sc["sockets"] * sc["servers"] * g
    cell = make_group(sc)
    req = make_requests(sc["arrival"], items=sc["items"])
    out = []
    lo = 0
    for cut in [*sc["cuts"], 10**12]:
        hi = int(np.searchsorted(req.arrival_ns, cut, side="left"))
        cell.submit(sc["host"][lo:hi], req.take(slice(lo, hi)))
        lo = hi
        done = cell.advance(cut)
        assert np.all(done.finish_ns < cut)
        out.append(done)
    res = {}
    for d in out:
        for k in range(len(d)):
            acc = int(d.accelerator_id[k]) - 100
            assert acc // per_host == int(d.host_id[k]) - 5
            local_server = (acc % (sc["servers"] * g)) // g
            res[int(d.request_id[k])] = (
                int(d.start_ns[k]),
                int(d.finish_ns[k]),
                local_server,
                int(d.batch_size[k]),
            )
    assert not cell.outstanding().any()
    return req, res


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_rr_cell_matches_event_oracle(sc: dict) -> None:
    req, got = run_cell(sc)
    assert sorted(got) == list(range(len(req)))  # every request exactly once
    svc = {
        b: max(1, int(np.ceil((sc["svc_base"] + sc["svc_per_item"] * b) / 1e9 * 1e9)))
        for b in range(1, 400)
    }
    for h in range(sc["hosts"]):
        on_host = [k for k in range(len(req)) if sc["host"][k] == h]
        for s in range(sc["sockets"]):
            mine = [
                (int(req.arrival_ns[k]), k, int(req.items[k]))
                for j, k in enumerate(on_host)
                if j % sc["sockets"] == s
            ]
            ref = simulate_socket(
                mine, sc["cores"], sc["servers"], sc["cpu_ns"], svc, sc["max_items"], sc["max_wait"]
            )
            for _, k, _ in mine:
                want = (ref.start[k], ref.finish[k], ref.server[k], ref.batch_size[k])
                assert got[k] == want, (k, got[k], want)


def test_batches_close_on_size_and_deadline() -> None:
    ready = np.array([0, 10, 20, 30, 100, 105], dtype=np.int64)
    items = np.array([2, 2, 3, 1, 9, 1], dtype=np.int32)
    first, end, close = form_batches(ready, items, max_items=5, max_wait_ns=50, until_ns=200)
    # [0,10]: 2+2, request 2 overflows at t=20 -> close 20; [20,30] deadline 70;
    # [100] oversize alone at 100; [105] deadline 155
    assert first.tolist() == [0, 2, 4, 5]
    assert end.tolist() == [2, 4, 5, 6]
    assert close.tolist() == [20, 70, 100, 155]


def test_open_batch_waits_for_the_bound() -> None:
    ready = np.array([0, 10], dtype=np.int64)
    items = np.array([1, 1], dtype=np.int32)
    first, _, _ = form_batches(ready, items, max_items=5, max_wait_ns=50, until_ns=50)
    assert len(first) == 0  # deadline at 50 is not before the bound
    first, end, close = form_batches(ready, items, max_items=2, max_wait_ns=50, until_ns=50)
    assert (first.tolist(), end.tolist(), close.tolist()) == ([0], [2], [10])  # exactly full


class LongestFree:
    """The default rule as a dispatch policy: the server free the longest, lowest index."""

    def choose(self, free_ns: np.ndarray, start_ns: int) -> int:
        return int(np.argmin(free_ns))


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_dispatch_policy_hook_with_the_default_rule_changes_nothing(sc: dict) -> None:
    req = make_requests(sc["arrival"], items=sc["items"])
    runs = []
    for cell in (make_group(sc), make_group(sc, LongestFree())):
        cell.submit(sc["host"], req)
        runs.append(cell.advance(10**12))
    for name, col in runs[0].columns().items():
        assert np.array_equal(col, getattr(runs[1], name)), name
