"""LLM replicas failing inside a replay: ``evict`` on the replica cells, and fleet events on
LLM pools in a Simulation.

Cell level (Hypothesis over small replicas and workloads, plain and disaggregated): after
``advance(at)`` + ``evict(at)`` the rows returned so far are exactly the uninterrupted run's
rows finished before ``at``, the evicted requests are exactly the rest of those submitted
(original columns, arrival order), the replica is empty, its counters do not move while it
is down, and once repaired it serves new requests exactly as a fresh replica would.

Simulation level: random fail/repair/drain/undrain lists on a 2-4 replica Llama-2-7B pool:
every request exactly once with its original arrival, failed counts equal the event log,
nothing served on a host between its failure and its repair, the same results for 1 and
several shards, and the failed accelerators' busy time does not grow while they are down.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_REJECTED,
    Completed,
    DeviceCounters,
    RequestBatch,
    make_requests,
)
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.pd_routing import uniform_links
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.router import Router
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import summarize

CELL_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
END_NS = 10**16  # past every finish


def make_cell(kind: str, cost: Any, limits: ReplicaLimits) -> LLMReplicaCell | DisaggregatedCell:
    if kind == "plain":
        return LLMReplicaCell(
            ReplicaScheduler(cost, limits),
            accelerator_ids=np.array([4, 5]),
            host_id=2,
            weight_bytes_per_accelerator=1e9,
            kv_bytes_per_token=100,
            compact_after=2,  # compaction on: evict must see through it
        )
    decode = ReplicaLimits(
        limits.max_num_batched_tokens,
        limits.max_num_seqs,
        limits.block_size,
        limits.kv_capacity_tokens * 2,
        limits.prefix_caching,
    )
    return DisaggregatedCell(
        [ReplicaScheduler(cost, limits)],
        [ReplicaScheduler(cost, decode)],
        prefill_ids=[np.array([0])],
        decode_ids=[np.array([1, 2])],
        host_id=0,
        kv_bytes_per_token=1000,
        links=uniform_links(1, 1, 1e9),
        router=Router("round_robin", np.arange(1), np.ones(1), entity_rng(0, 2, 0, 1)),
        report_interval_ns=5 * 10**6,
    )


def batch_of(work: tuple[np.ndarray, ...], shift_ns: int = 0, first_id: int = 100) -> RequestBatch:
    arrival, prompt, output, session = work
    return make_requests(
        arrival + shift_ns,
        input_tokens=prompt,
        output_tokens=output,
        items=0,
        session_id=session,
        request_id=np.arange(len(arrival)) + first_id,
    )


def drive(cell: Any, batch: RequestBatch, edges: list[int]) -> Completed:
    """Submit each window's arrivals, advance to its end; all rows, sorted by request id."""
    parts, start = [], 0
    for until in edges:
        stop = int(np.searchsorted(batch.arrival_ns, until))
        cell.submit(batch.take(np.arange(start, stop)))
        start = stop
        got = cell.advance(until)
        assert np.all(got.finish_ns < until)
        parts.append(got)
    out = Completed.concat(parts)
    return out.take(np.argsort(out.request_id, kind="stable"))


def assert_rows_equal(a: Completed, b: Completed) -> None:
    for name, col in a.columns().items():
        np.testing.assert_array_equal(col, getattr(b, name), err_msg=name)


def counters_equal(a: DeviceCounters, b: DeviceCounters) -> bool:
    return all(np.array_equal(v, getattr(b, k)) for k, v in a.columns().items())


def schedulers(cell: Any) -> list[ReplicaScheduler]:
    return [cell.scheduler] if isinstance(cell, LLMReplicaCell) else [*cell.prefill, *cell.decode]


# the failure: anywhere, or just before (or at) a finish of the uninterrupted run, so that
# the iteration running at the failure often finishes requests (held back, then evicted)
FAILURE_TIMES = st.one_of(
    st.tuples(st.just("anywhere"), st.integers(0, 10**10), st.just(0)),
    st.tuples(st.just("finish"), st.integers(0, 39), st.sampled_from([0, 1, 10**3, 10**6])),
)


def failure_time(when: tuple[str, int, int], whole: Completed, first_arrival_ns: int) -> int:
    how, a, b = when
    if how == "anywhere":
        return first_arrival_ns + a
    finish = np.sort(whole.finish_ns)
    return max(first_arrival_ns, int(finish[a % len(finish)]) - b)


@CELL_SETTINGS
@given(
    st.sampled_from(["plain", "disaggregated"]),
    replicas(),
    workloads(),
    FAILURE_TIMES,
    st.lists(st.integers(0, 10**10), max_size=4),
    st.integers(1, 10**10),
)
def test_evict_returns_exactly_what_the_replica_holds(
    kind: str, replica: Any, work: Any, when: tuple[str, int, int], cuts: list[int], down_ns: int
) -> None:
    cost, limits = replica
    batch = batch_of(work)
    whole = drive(make_cell(kind, cost, limits), batch, [END_NS])
    at = failure_time(when, whole, int(work[0][0]))
    at_offset = at - int(work[0][0])
    cell = make_cell(kind, cost, limits)
    edges = sorted({int(work[0][0]) + c for c in cuts if c < at_offset} | {at})
    before = drive(cell, batch, edges)
    held_counters = cell.device_counters()
    evicted = cell.evict(at)
    # returned so far: exactly the uninterrupted run's rows finished before the failure
    assert_rows_equal(before, whole.take(np.flatnonzero(whole.finish_ns < at)))
    # evicted: every other request submitted (arrival < at), original columns, arrival order
    submitted = batch.take(np.flatnonzero(batch.arrival_ns < at))
    expect = np.setdiff1d(submitted.request_id, before.request_id)
    assert sorted(evicted.request_id.tolist()) == expect.tolist()
    assert np.all(np.diff(evicted.arrival_ns) >= 0)
    same_arrival = np.diff(evicted.arrival_ns) == 0
    assert np.all(np.diff(evicted.request_id)[same_arrival] > 0)
    original = submitted.take(np.searchsorted(submitted.request_id, evicted.request_id))
    for name, col in original.columns().items():
        np.testing.assert_array_equal(col, getattr(evicted, name), err_msg=name)
    assert cell.report().outstanding == 0
    for sched in schedulers(cell):  # empty: no requests, no KV blocks, no prefix cache
        assert sched.kv.used == 0 and sched.kv.cached == 0 and not sched.kv.cache
        assert not sched.running and not sched.waiting and sched.outstanding == 0
        assert sched.t_as == at * 10**9  # idle from the failure on
    # down: counters frozen, busy time never past the failure
    assert counters_equal(cell.device_counters(), held_counters)
    assert np.all(held_counters.busy_ns <= at)
    repair = at + down_ns
    assert len(cell.advance(repair)) == 0
    assert counters_equal(cell.device_counters(), held_counters)
    # repaired: new requests are served as by a fresh replica, counters add up
    later = batch_of(work, shift_ns=repair - int(work[0][0]), first_id=10_000)
    again = drive(cell, later, [END_NS])
    fresh_cell = make_cell(kind, cost, limits)
    fresh = drive(fresh_cell, later, [END_NS])
    assert_rows_equal(again, fresh)
    got, new = cell.device_counters(), fresh_cell.device_counters()
    for name in ("batches", "work_units"):
        total = getattr(held_counters, name) + getattr(new, name)
        np.testing.assert_array_equal(getattr(got, name), total, err_msg=name)
    # busy time is kept in attoseconds and floored to ns: the sum may round up by 1 ns
    extra_ns = got.busy_ns - (held_counters.busy_ns + new.busy_ns)
    assert np.all((extra_ns >= 0) & (extra_ns <= 1)), extra_ns
    assert cell.report().outstanding == 0


@pytest.mark.parametrize(
    "pool",
    [{"tp": 2}, {"disaggregation": {"prefill_accelerators": 1}}],
    ids=["tp2", "disaggregated"],
)
def test_a_repaired_7b_replica_serves_like_a_fresh_one(pool: dict[str, Any]) -> None:
    """A factory-built Llama-2-7B replica (real cost model) failed under load, repaired
    100 ms later: requests after the repair get a fresh replica's rows and the counters add
    up; nothing is counted while it is down."""
    from test_cell import spec

    from mtia_cluster.engine.llm.factory import build_llm_cell

    tr = llm_trace(3, 60)
    at = int(tr.arrival_ns[40])  # mid-run: requests queued and running
    cell = build_llm_cell(spec(pool, chips=2))
    done = drive(cell, tr.take(np.arange(40)), [at // 2, at])
    down = cell.device_counters()
    evicted = cell.evict(at)
    assert len(evicted) > 0 and len(done) + len(evicted) == 40
    assert np.all(down.busy_ns <= at) and np.all(down.busy_ns > 0)
    repair = at + 100_000_000
    assert len(cell.advance(repair)) == 0
    assert counters_equal(cell.device_counters(), down)
    later = tr.take(np.arange(40, 60))
    later = RequestBatch(**{**later.columns(), "arrival_ns": later.arrival_ns - at + repair})
    fresh_cell = build_llm_cell(spec(pool, chips=2))
    assert_rows_equal(drive(cell, later, [END_NS]), drive(fresh_cell, later, [END_NS]))
    fresh = fresh_cell.device_counters()
    np.testing.assert_array_equal(
        cell.device_counters().work_units, down.work_units + fresh.work_units
    )


# ---------------------------------------------------------------------------- simulation
POOLS: dict[str, dict[str, Any]] = {
    "tp8-x2": {"accelerators": 16, "tp": 8},
    "tp8-x3-prefix": {"accelerators": 24, "tp": 8, "prefix_caching": True},
    "tp8-x4": {"accelerators": 32, "accelerators_per_replica": 8, "tp": 8},
    "disagg-x2": {
        "accelerators": 16,
        "accelerators_per_replica": 8,
        "disaggregation": {"prefill_accelerators": 4},
    },
}
STEP_NS = 10_000_000  # report interval 10 ms


def scenario(
    pool: dict[str, Any],
    events: list[dict[str, Any]],
    policy: str,
    *,
    name: str = "llm-events",
    seed: int = 2,
    report_ms: int = 10,
    metrics_ms: int = 10,
) -> Any:
    """One region with one chat pool (`pool` adds to it), fleet `events`, router `policy`."""
    return parse_scenario(
        {
            "name": name,
            "seed": seed,
            "report_interval_ms": report_ms,
            "metrics_interval_ms": metrics_ms,
            "router": {"policy": policy},
            "regions": [
                {
                    "name": "a",
                    "pools": [
                        {
                            "service": "chat",
                            "model": "llama-2-7b",
                            "platform": "hgx-h100",
                            "max_num_batched_tokens": 2048,
                            **pool,
                        }
                    ],
                }
            ],
            "events": events,
        },
        file=f"{name}.yaml",
    )


def llm_trace(seed: int, n: int = 150) -> RequestBatch:
    """About 1.8 s of chat requests (bursty enough to queue), two-turn sessions."""
    rng = entity_rng(seed, 9)
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 1.2e7)).astype(np.int64)
    prompt = np.clip(np.round(rng.lognormal(np.log(800), 0.9, n)), 1, 8000).astype(np.int32)
    output = np.clip(np.round(rng.lognormal(np.log(120), 0.8, n)), 1, 800).astype(np.int32)
    session = np.arange(n) // 2
    return make_requests(
        arrival, items=0, input_tokens=prompt, output_tokens=output, session_id=session
    )


def hosts_of(pool: dict[str, Any]) -> int:
    return pool["accelerators"] // 8


def events_strategy(hosts: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Up to 6 events over the trace's first second, on 1-2 of the pool's `hosts` hosts;
    a failure is often followed by its repair (so repaired replicas serve again)."""
    event = st.fixed_dictionaries(
        {
            "at_s": st.integers(0, 20).map(lambda k: k * 0.05),
            "kind": st.sampled_from(["fail", "repair", "drain", "undrain"]),
            "region": st.just("a"),
            "hosts": st.lists(st.integers(0, hosts - 1), min_size=1, max_size=2, unique=True),
            "on_failure": st.sampled_from(["retry", "fail"]),
        }
    )
    repair_after = st.one_of(st.none(), st.integers(1, 10).map(lambda k: k * 0.05))

    def with_repairs(drawn: list[tuple[dict[str, Any], float | None]]) -> list[dict[str, Any]]:
        out = []
        for ev, after in drawn:
            out.append(ev)
            if ev["kind"] == "fail" and after is not None:
                out.append({**ev, "kind": "repair", "at_s": ev["at_s"] + after})
        return out

    return st.lists(st.tuples(event, repair_after), max_size=4).map(with_repairs)


@st.composite
def pool_and_events(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    name = draw(st.sampled_from(sorted(POOLS)))
    return name, draw(events_strategy(hosts_of(POOLS[name])))


def down_intervals(sim: Simulation, log: list[dict[str, Any]], events: list[dict]) -> dict:
    """Global host id -> list of [fail boundary, repair boundary) from the applied events."""
    # stable by integer ns, as the engine orders them (config/events.py: at_ns =
    # round(at_s * 1e9)); by float seconds, 0.7 and 0.7000000000000001 were two times
    ordered = sorted(events, key=lambda e: round(e["at_s"] * 1e9))
    out: dict[int, list[list[float]]] = {}
    host0 = min(sim.topology.cell_host0)
    for entry, ev in zip(log, ordered, strict=False):  # events after the end: not applied
        for h in ev["hosts"]:
            spans = out.setdefault(host0 + h, [])
            if ev["kind"] == "fail" and (not spans or spans[-1][1] != np.inf):
                spans.append([entry["at_ns"], np.inf])
            elif ev["kind"] == "repair" and spans and spans[-1][1] == np.inf:
                spans[-1][1] = entry["at_ns"]
    return out


def check_down_hosts(sim: Simulation, res: Any, events: list[dict]) -> None:
    """No row served on a host while it is down; its accelerators' busy time stays put."""
    table = summarize(res).devices
    req, dev = res.requests, SimpleNamespace(**{n: table[n].to_numpy() for n in table.column_names})
    ok = req.status == STATUS_OK
    acc_host = np.asarray(sim.topology.acc_host)
    for host, spans in down_intervals(sim, res.fleet_events, events).items():
        on = ok & (req.host_id == host)
        mine = acc_host[dev.accelerator_id] == host
        for lo, hi in spans:
            bad = on & (req.finish_ns >= lo) & (req.start_ns < hi)
            assert not bad.any(), (host, lo, hi)
            inside = mine & (dev.interval_start_ns >= lo) & (dev.interval_end_ns <= hi)
            assert np.all(dev.busy_ns[inside] == 0), (host, lo, hi)
            assert np.all(dev.batches[inside] == 0), (host, lo, hi)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pool_and_events(),
    st.integers(0, 10_000),
    st.sampled_from(["least_outstanding", "p2c"]),
)
def test_llm_fleet_events_lose_nothing_and_serve_nothing_while_down(
    drawn: tuple[str, list[dict[str, Any]]], seed: int, policy: str
) -> None:
    pool_name, events = drawn
    pool = POOLS[pool_name]
    tr = llm_trace(seed)
    sim = Simulation(scenario(pool, events, policy))
    res = sim.run(tr)
    req = res.requests
    assert np.array_equal(req.request_id, tr.request_id)  # exactly once, sorted by id
    assert np.array_equal(req.arrival_ns, tr.arrival_ns)  # original arrival kept on retry
    assert np.all(req.finish_ns >= req.arrival_ns)
    assert set(np.unique(req.status).tolist()) <= {STATUS_OK, STATUS_FAILED, STATUS_REJECTED}
    log = res.fleet_events
    # the engine orders events by integer ns, stably: times closer than 1 ns keep list order
    ordered = sorted(events, key=lambda e: round(e["at_s"] * 1e9))
    assert [e["kind"] for e in log] == [e["kind"] for e in ordered[: len(log)]]  # in order
    assert sum(e["requests_failed"] for e in log) == int(np.sum(req.status == STATUS_FAILED))
    for entry in log:  # failed rows carry the failure's boundary
        if entry["requests_failed"]:
            at_fail = (req.status == STATUS_FAILED) & (req.finish_ns == entry["at_ns"])
            assert at_fail.sum() >= entry["requests_failed"]
    check_down_hosts(sim, res, events)
    several = Simulation(scenario(pool, events, policy), shards=hosts_of(pool)).run(tr)
    assert several.fleet_events == log
    for name, col in req.columns().items():
        np.testing.assert_array_equal(col, getattr(several.requests, name), err_msg=name)


def test_a_failed_replica_retries_elsewhere_and_serves_again_after_repair() -> None:
    """Fail host 0 mid-run with retry, repair it: its requests finish on host 1 (latency
    grows), none lost, and host 0 takes new requests after the repair."""
    pool = POOLS["tp8-x2"]
    tr = llm_trace(5, 200)
    base = Simulation(scenario(pool, [], "least_outstanding")).run(tr)
    ev = [
        {"at_s": 0.5, "kind": "fail", "region": "a", "hosts": [0], "on_failure": "retry"},
        {"at_s": 1.0, "kind": "repair", "region": "a", "hosts": [0]},
    ]
    sim = Simulation(scenario(pool, ev, "least_outstanding"))
    res = sim.run(tr)
    fail, repair = res.fleet_events
    assert fail["requests_retried"] > 0 and fail["at_ns"] == 50 * STEP_NS
    req = res.requests
    assert np.all(req.status == STATUS_OK)
    host0 = min(sim.topology.cell_host0)
    on0 = req.host_id == host0
    assert not np.any(on0 & (req.finish_ns >= fail["at_ns"]) & (req.start_ns < repair["at_ns"]))
    assert np.any(on0 & (req.start_ns >= repair["at_ns"]))  # serving again
    lat = req.finish_ns - req.arrival_ns
    lat0 = base.requests.finish_ns - base.requests.arrival_ns
    assert lat.sum() > lat0.sum()  # the lost work costs time
