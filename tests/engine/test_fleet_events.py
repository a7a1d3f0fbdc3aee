"""Fleet events inside a replay: failures (retry or fail), repairs, drains and undrains.

Invariants under random event lists: every request exactly once with its original arrival;
nothing served on a host while it is down; no accelerator runs two batches at once; the
same results for any sharding; the event log accounts for every moved request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_REJECTED,
    RequestBatch,
    make_requests,
)
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError

HOSTS = 4
STEP_NS = 1_000_000  # report interval 1 ms


def scenario(events: list[dict[str, Any]], policy: str = "least_outstanding") -> Any:
    return parse_scenario(
        {
            "name": "events",
            "seed": 3,
            "report_interval_ms": 1,
            "metrics_interval_ms": 2,
            "router": {"policy": policy},
            "regions": [
                {
                    "name": "a",
                    "pools": [
                        {
                            "service": "rank",
                            "model": "hc1",
                            "platform": "mtia-2i-rack",
                            "hosts": HOSTS,
                            "batching": {"max_items": 256, "max_wait_us": 300},
                        }
                    ],
                }
            ],
            "events": events,
        }
    )


def trace(seed: int, n: int, rate_per_ms: float = 30.0) -> RequestBatch:
    rng = entity_rng(seed, 5)
    gaps = rng.exponential(1e6 / rate_per_ms, n)
    arrival = np.cumsum(np.ceil(gaps)).astype(np.int64)
    return make_requests(arrival, items=rng.integers(50, 400, n))


events_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "at_s": st.integers(0, 12).map(lambda ms: ms / 1000),
            "kind": st.sampled_from(["fail", "repair", "drain", "undrain"]),
            "region": st.just("a"),
            "hosts": st.lists(st.integers(0, HOSTS - 1), min_size=1, max_size=3, unique=True),
            "on_failure": st.sampled_from(["retry", "fail"]),
        }
    ),
    max_size=6,
)


def down_intervals(sim: Simulation, log: list[dict[str, Any]], events: list[dict]) -> dict:
    """Global host id -> list of [fail boundary, repair boundary) from the applied events."""
    ordered = sorted(events, key=lambda e: round(e["at_s"] * 1e9))  # as the engine: by ns
    out: dict[int, list[list[float]]] = {}
    host0 = min(sim.topology.cell_host0)
    for entry, ev in zip(log, ordered, strict=False):
        for h in ev["hosts"]:
            spans = out.setdefault(host0 + h, [])
            if ev["kind"] == "fail" and (not spans or spans[-1][1] != np.inf):
                spans.append([entry["at_ns"], np.inf])
            elif ev["kind"] == "repair" and spans and spans[-1][1] == np.inf:
                spans[-1][1] = entry["at_ns"]
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy, st.integers(0, 10_000), st.sampled_from(["least_outstanding", "p2c"]))
def test_every_request_once_and_nothing_served_while_down(
    events: list[dict[str, Any]], seed: int, policy: str
) -> None:
    tr = trace(seed, 500)
    sim = Simulation(scenario(events, policy))
    res = sim.run(tr)
    req = res.requests
    assert np.array_equal(req.request_id, tr.request_id)  # exactly once, sorted by id
    assert np.array_equal(req.arrival_ns, tr.arrival_ns)  # original arrival kept on retry
    assert np.all(req.finish_ns >= req.arrival_ns)
    assert set(np.unique(req.status).tolist()) <= {STATUS_OK, STATUS_FAILED, STATUS_REJECTED}
    log = res.fleet_events
    ordered = sorted(events, key=lambda e: round(e["at_s"] * 1e9))
    assert [e["kind"] for e in log] == [e["kind"] for e in ordered[: len(log)]]  # in order
    assert sum(e["requests_failed"] for e in log) == int(np.sum(req.status == STATUS_FAILED))
    ok = req.status == STATUS_OK
    for host, spans in down_intervals(sim, log, events).items():
        on = ok & (req.host_id == host)
        for lo, hi in spans:  # a served request finished before the failure or started after
            bad = on & (req.finish_ns >= lo) & (req.start_ns < hi)
            assert not bad.any(), (host, lo, hi)
    # no accelerator runs two batches at once
    acc, start, finish = req.accelerator_id[ok], req.start_ns[ok], req.finish_ns[ok]
    batches = np.unique(np.stack([acc, start, finish]), axis=1)
    for a in np.unique(batches[0]):
        s, f = batches[1][batches[0] == a], batches[2][batches[0] == a]
        order = np.argsort(s)
        assert np.all(s[order][1:] >= f[order][:-1])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy, st.integers(0, 10_000))
def test_events_give_the_same_results_for_any_sharding(
    events: list[dict[str, Any]], seed: int
) -> None:
    tr = trace(seed, 300)
    one = Simulation(scenario(events)).run(tr)
    three = Simulation(scenario(events), shards=3).run(tr)
    for k, v in one.requests.columns().items():
        assert np.array_equal(v, getattr(three.requests, k)), k
    assert one.fleet_events == three.fleet_events


def test_a_failed_host_retries_its_requests_elsewhere() -> None:
    tr = trace(1, 400, rate_per_ms=60)
    base = Simulation(scenario([])).run(tr)
    ev = [{"at_s": 0.002, "kind": "fail", "region": "a", "hosts": [0], "on_failure": "retry"}]
    sim = Simulation(scenario(ev))
    res = sim.run(tr)
    (entry,) = res.fleet_events
    assert entry["at_ns"] == 2 * STEP_NS and entry["requests_retried"] > 0
    host0 = min(sim.topology.cell_host0)
    after = res.requests.finish_ns >= entry["at_ns"]
    assert not np.any(after & (res.requests.host_id == host0))  # the host never serves again
    assert np.all(res.requests.status == STATUS_OK)  # retried, none lost
    # retried requests wait longer than in the run without the failure
    moved = res.requests.host_id != base.requests.host_id
    lat = res.requests.finish_ns - res.requests.arrival_ns
    lat0 = base.requests.finish_ns - base.requests.arrival_ns
    assert lat[moved].mean() > lat0[moved].mean()


def test_on_failure_fail_returns_failed_rows_at_the_failure_time() -> None:
    tr = trace(2, 400, rate_per_ms=60)
    ev = [{"at_s": 0.003, "kind": "fail", "region": "a", "hosts": [1, 2], "on_failure": "fail"}]
    res = Simulation(scenario(ev)).run(tr)
    failed = res.requests.status == STATUS_FAILED
    assert failed.sum() == res.fleet_events[0]["requests_failed"] > 0
    assert np.all(res.requests.finish_ns[failed] == 3 * STEP_NS)


def test_a_region_with_every_host_down_rejects_until_repair() -> None:
    tr = trace(3, 300)
    ev = [
        {"at_s": 0.001, "kind": "drain", "region": "a"},
        {"at_s": 0.004, "kind": "undrain", "region": "a"},
    ]
    res = Simulation(scenario(ev)).run(tr)
    rejected = res.requests.status == STATUS_REJECTED
    arr = res.requests.arrival_ns
    assert np.all(rejected == ((arr >= STEP_NS) & (arr < 4 * STEP_NS)))


def test_drained_hosts_finish_their_work_and_get_no_new_requests() -> None:
    tr = trace(4, 400, rate_per_ms=60)
    ev = [{"at_s": 0.002, "kind": "drain", "region": "a", "hosts": [0, 1]}]
    sim = Simulation(scenario(ev))
    res = sim.run(tr)
    host0 = min(sim.topology.cell_host0)
    drained = np.isin(res.requests.host_id, [host0, host0 + 1])
    assert np.all(res.requests.status == STATUS_OK)
    assert np.all(res.requests.arrival_ns[drained] < 2 * STEP_NS)
    assert drained.any()


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"at_s": 0, "kind": "fail", "region": "a", "hosts": [HOSTS]}, "events[0].hosts"),
        ({"at_s": 0, "kind": "fail", "region": "a", "racks": [5]}, "events[0].racks"),
        ({"at_s": 0, "kind": "explode", "region": "a"}, "events[0].kind"),
        ({"at_s": -1, "kind": "fail", "region": "a"}, "events[0].at_s"),
        ({"at_s": 0, "kind": "fail", "region": "nowhere"}, "events[0].region"),
        ({"at_s": 0, "kind": "fail", "region": "a", "hosts": [0], "racks": [0]}, "events[0].racks"),
    ],
)
def test_bad_events_are_user_errors(event: dict[str, Any], field: str) -> None:
    with pytest.raises(UserError) as err:
        Simulation(scenario([event]))
    assert field in str(err.value)


def failures_scenario(seed: int, level: str = "host") -> Any:
    sc = scenario([]).raw | {"seed": seed}
    sc["failures"] = [
        {"level": level, "mtbf_s": 0.004, "mttr_s": 0.002, "horizon_s": 0.015, "on_failure": "fail"}
    ]
    return parse_scenario(sc)


def test_drawn_failures_are_seeded_and_lose_nothing() -> None:
    tr = trace(6, 500)
    a = Simulation(failures_scenario(1)).run(tr)
    b = Simulation(failures_scenario(1), shards=2).run(tr)
    c = Simulation(failures_scenario(2)).run(tr)
    assert a.fleet_events == b.fleet_events and len(a.fleet_events) > 0
    assert a.fleet_events != c.fleet_events
    assert np.array_equal(a.requests.request_id, tr.request_id)
    assert np.array_equal(a.requests.status, b.requests.status)
    failed = int(np.sum(a.requests.status == STATUS_FAILED))
    assert failed == sum(e["requests_failed"] for e in a.fleet_events)


def test_drawn_failure_rate_matches_mtbf() -> None:
    """Alternating renewal: over a horizon H, a part fails about H / (MTBF + MTTR) times."""
    from mtia_cluster.engine.events import drawn_failures

    sc = scenario([]).raw | {"seed": 11}
    sc["regions"][0]["pools"][0]["hosts"] = 60
    sc["failures"] = [{"level": "host", "mtbf_s": 10, "mttr_s": 2, "horizon_s": 1200}]
    fails = [e for e in drawn_failures(Simulation(parse_scenario(sc)).topology) if e.kind == "fail"]
    expected = 60 * 1200 / 12  # 6,000
    assert abs(len(fails) - expected) < 4 * expected**0.5  # ~4 standard deviations


def test_rack_failures_take_whole_racks() -> None:
    sc = scenario([]).raw | {"seed": 5}
    sc["regions"][0]["pools"][0]["hosts"] = 6  # two racks of three hosts
    sc["failures"] = [{"level": "rack", "mtbf_s": 0.003, "mttr_s": 0.002, "horizon_s": 0.01}]
    sim = Simulation(parse_scenario(sc))
    res = sim.run(trace(7, 400))
    fails = [e for e in res.fleet_events if e["kind"] == "fail"]
    assert fails and all(e["cells"] == 3 for e in fails)


def test_bad_failures_are_user_errors() -> None:
    sc = scenario([]).raw | {
        "failures": [{"level": "host", "mtbf_s": 0, "mttr_s": 1, "horizon_s": 1}]
    }
    with pytest.raises(UserError) as err:
        parse_scenario(sc)
    assert "failures[0].mtbf_s" in str(err.value)


def links_scenario(events: list[dict[str, Any]]) -> Any:
    """One region: an R&R host pool, P/D pairs linked over RDMA (scale-out) and plain
    replicas inside the scale-up domain, all on the same kinds of hosts."""
    llm = {"model": "llama-2-7b", "platform": "hgx-h100", "max_num_batched_tokens": 2048}
    return parse_scenario(
        {
            "name": "links",
            "seed": 2,
            "report_interval_ms": 5,
            "metrics_interval_ms": 1000,
            "regions": [
                {
                    "name": "a",
                    "pools": [
                        {"service": "rank", "model": "hc1", "platform": "mtia-2i-rack", "hosts": 1},
                        {
                            **llm,
                            "service": "pd",
                            "accelerators": 8,
                            "accelerators_per_replica": 2,
                            "disaggregation": {"prefill_accelerators": 1, "link": "scale_out"},
                        },
                        {**llm, "service": "chat", "accelerators": 8, "tp": 1},
                    ],
                }
            ],
            "events": events,
        }
    )


def test_an_rdma_link_failure_takes_only_the_cells_that_need_scale_out() -> None:
    sim = Simulation(links_scenario([]))
    fleet = sim.topology
    hosts = sorted(set(fleet.acc_host))  # region-local host index = position here
    pd_host = fleet.acc_host[fleet.cell_acc0[fleet.cell_service.index(1)]]
    k = hosts.index(pd_host)
    for target, cells in (({"links": [k]}, 4), ({"hosts": [k]}, 4)):
        ev = {"at_s": 0, "kind": "fail", "region": "a", **target}
        (resolved,) = Simulation(links_scenario([ev])).events.events
        services = {fleet.cell_service[c] for c in resolved.cells.tolist()}
        assert len(resolved.cells) == cells and services == {1}  # the 4 P/D pairs of the host
    chat_host = fleet.acc_host[fleet.cell_acc0[fleet.cell_service.index(2)]]
    for host, kind, cells in (
        (fleet.cell_host0[0], "links", 0),  # R&R hosts do not use the RDMA network
        (chat_host, "links", 0),  # tp=1 replicas stay inside the host
        (chat_host, "hosts", 8),  # but the host failing takes its 8 replicas
    ):
        ev = {"at_s": 0, "kind": "fail", "region": "a", kind: [hosts.index(host)]}
        (resolved,) = Simulation(links_scenario([ev])).events.events
        assert len(resolved.cells) == cells, (kind, host)


def test_a_link_failure_inside_a_replay_loses_nothing() -> None:
    rng = entity_rng(4, 9)
    n = 300
    arrival = np.cumsum(rng.integers(1, 20_000_000, n)).astype(np.int64)
    service = (np.arange(n) % 3).astype(np.int32)
    base = make_requests(
        arrival,
        items=np.where(service == 0, 200, 0),
        input_tokens=np.where(service == 0, 0, 300),
        output_tokens=np.where(service == 0, 0, 40),
    )
    tr = RequestBatch(**{**base.columns(), "service": service})
    sim0 = Simulation(links_scenario([]))
    pd_host = sim0.topology.acc_host[sim0.topology.cell_acc0[sim0.topology.cell_service.index(1)]]
    k = sorted(set(sim0.topology.acc_host)).index(pd_host)
    ev = {"at_s": 1.0, "kind": "fail", "region": "a", "links": [k], "on_failure": "fail"}
    res = Simulation(links_scenario([ev])).run(tr)
    assert np.array_equal(res.requests.request_id, tr.request_id)
    failed = res.requests.status == STATUS_FAILED
    assert failed.sum() == res.fleet_events[0]["requests_failed"]
    assert set(res.requests.service[failed].tolist()) <= {1}  # only P/D requests fail
    later = res.requests.arrival_ns >= res.fleet_events[0]["at_ns"]
    assert np.all(res.requests.status[later & (service == 1)] == STATUS_REJECTED)  # no pair left
