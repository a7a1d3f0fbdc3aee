"""Simulation invariants: placement independence, exactly-once, no overlapping batches."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.models import POLICIES as ALL_POLICIES
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import STATUS_OK, STATUS_REJECTED, RequestBatch, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import summarize


def scenario(policy: str, seed: int = 1) -> Any:
    return parse_scenario(
        {
            "name": "mixed",
            "seed": seed,
            "report_interval_ms": 1,
            "metrics_interval_ms": 2,
            "router": {"policy": policy},
            "regions": [
                {
                    "name": "a",
                    "weight": 2,
                    "pools": [
                        {
                            "service": "rank",
                            "model": "lc1",
                            "platform": "mtia-2i-rack",
                            "hosts": 2,
                            "batching": {"max_items": 256, "max_wait_us": 200},
                        },
                        {
                            "service": "syn",
                            "model": "svc-exp-1ms",
                            "platform": "mtia-2i-rack",
                            "accelerators": 4,
                            "accelerators_per_replica": 2,
                        },
                    ],
                },
                {
                    "name": "b",
                    "weight": 1,
                    "pools": [
                        {
                            "service": "rank",
                            "model": "hc1",
                            "platform": "mtia-2i-rack",
                            "hosts": 1,
                            "batching": {"max_items": 128, "max_wait_us": 100},
                        },
                    ],
                },
            ],
        }
    )


def trace(seed: int, n: int) -> RequestBatch:
    rng = entity_rng(seed, 99)
    arrival = np.cumsum(rng.integers(0, 40_000, n)).astype(np.int64)
    return make_requests(arrival, items=rng.integers(1, 300, n)).__class__(
        **{
            **make_requests(arrival, items=rng.integers(1, 300, n)).columns(),
            "service": rng.integers(0, 2, n).astype(np.int32),
            "region": rng.integers(-1, 2, n).astype(np.int32),
        }
    )


def run(policy: str, shards: Any, seed: int, n: int) -> Any:
    return Simulation(scenario(policy), shards=shards).run(trace(seed, n))


def devices(res: Any) -> Any:
    """The run's `devices` rows (results.summarize) as numpy columns."""
    table = summarize(res).devices
    return SimpleNamespace(**{n: table[n].to_numpy() for n in table.column_names})


def same(a: Any, b: Any) -> None:
    for name, col in a.requests.columns().items():
        assert np.array_equal(col, b.requests.columns()[name]), name
    da, db = devices(a), devices(b)
    for name in ("busy_ns", "batches", "work_units", "energy_j", "peak_memory_bytes"):
        assert np.array_equal(getattr(da, name), getattr(db, name)), name


POLICIES = list(ALL_POLICIES)  # every router policy, KV-aware ones included


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(POLICIES),
    st.integers(0, 1000),
    st.integers(1, 400),
    st.permutations(list(range(8))),
    st.integers(1, 7),
)
def test_results_do_not_depend_on_sharding(
    policy: str, seed: int, n: int, perm: list[int], cut: int
) -> None:
    one = run(policy, 1, seed, n)
    cells = one.topology.cells
    order = [c for c in perm if c < cells]
    split = [order[:cut], order[cut:]]
    same(one, run(policy, [g for g in split if g], seed, n))
    same(one, run(policy, cells, seed, n))


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(POLICIES), st.integers(0, 1000), st.integers(1, 600))
def test_every_request_once_and_no_overlap(policy: str, seed: int, n: int) -> None:
    res = run(policy, 2, seed, n)
    req = res.requests
    assert np.array_equal(req.request_id, np.arange(n))
    assert np.all(req.finish_ns >= req.arrival_ns)
    ok = req.status == STATUS_OK
    assert np.all(req.start_ns[ok] >= req.arrival_ns[ok])
    assert np.all(req.status[~ok] == STATUS_REJECTED)
    # region b has no 'syn' pool: exactly those requests are rejected
    assert np.array_equal(~ok, (req.region == 1) & (req.service == 1))
    batches = np.unique(
        np.stack([req.accelerator_id[ok], req.start_ns[ok], req.finish_ns[ok]], axis=1), axis=0
    )
    for acc in np.unique(batches[:, 0]):
        b = batches[batches[:, 0] == acc]
        assert np.all(b[1:, 1] >= b[:-1, 2]), f"accelerator {acc} runs two batches at once"
    dev = devices(res)
    assert np.all(dev.busy_ns <= dev.interval_end_ns - dev.interval_start_ns)


def test_summary_and_energy_are_consistent() -> None:
    res = run("least_outstanding", 1, 5, 500)
    rows = {(r["region"], r["service"]): r for r in summarize(res).summary["groups"]}
    assert rows[("a", "rank")]["completed"] + rows[("b", "rank")]["completed"] == int(
        np.sum((res.requests.service == 0) & (res.requests.status == STATUS_OK))
    )
    dev = devices(res)
    span_s = (dev.interval_end_ns - dev.interval_start_ns) / 1e9
    assert np.all(dev.energy_j >= 20 * span_s - 1e-9)  # at least idle power
    assert np.all(dev.energy_j <= 85 * span_s + 1e-9)  # at most TDP


def test_region_intervals_count_every_request() -> None:
    res = run("p2c", 2, 11, 800)
    rows = summarize(res).regions.to_pylist()
    span = {(r["interval_start_ns"], r["interval_end_ns"]) for r in rows}
    assert len(rows) == len(span) * len(res.regions)
    assert sum(r["offered"] for r in rows) == len(res.requests)
    assert all(r["power_w"] > 0 for r in rows)


def test_mm1_scenario_through_the_full_path() -> None:
    """configs/scenarios/mm1.yaml (router, shard, windows) at rho 0.5: mean wait ~ 1 ms."""
    from pathlib import Path

    from mtia_cluster.config.scenario import load_scenario

    path = Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "mm1.yaml"
    rng = entity_rng(4, 4)
    n = 200_000
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 2e6)).astype(np.int64)
    scenario = load_scenario(path, ["report_interval_ms=100", "metrics_interval_ms=1000"])
    res = Simulation(scenario).run(make_requests(arrival))
    wait_ms = float(np.mean(res.requests.start_ns - res.requests.arrival_ns)) / 1e6
    assert abs(wait_ms - 1.0) < 0.05  # M/M/1, rho 0.5: Wq = 1 ms (SE here ~1.2%)
    assert abs(summarize(res).summary["groups"][0]["utilization"] - 0.5) < 0.01


@pytest.mark.parametrize("policy", ["least_outstanding", "round_robin", "random", "weighted"])
def test_coalescing_idle_windows_changes_nothing(policy: str) -> None:
    """Sparse traffic (LLM, R&R, synthetic): jumping over arrival-free windows is exact, and
    so are the metrics-interval windows used when routing reads no load reports."""
    sc = parse_scenario(
        {
            "name": "sparse",
            "seed": 3,
            "report_interval_ms": 5,
            "metrics_interval_ms": 50,
            "router": {"policy": policy},
            "regions": [
                {
                    "name": "a",
                    "pools": [
                        {"service": "rank", "model": "hc1", "platform": "mtia-2i-rack", "hosts": 3},
                        {
                            "service": "chat",
                            "model": "llama-2-7b",
                            "platform": "hgx-h100",
                            "accelerators": 2,
                            "tp": 1,
                        },
                        {
                            "service": "syn",
                            "model": "svc-lognormal-1ms",
                            "platform": "mtia-2i-rack",
                            "accelerators": 2,
                            "accelerators_per_replica": 1,
                        },
                    ],
                }
            ],
        }
    )
    rng = entity_rng(8, 1)
    n = 60
    arrival = np.cumsum(rng.integers(1, 80_000_000, n)).astype(np.int64)
    service = rng.integers(0, 3, n).astype(np.int32)
    base = make_requests(
        arrival,
        items=rng.integers(1, 500, n),
        input_tokens=rng.integers(10, 600, n),
        output_tokens=rng.integers(1, 60, n),
    )
    cols = base.columns()
    cols["service"] = service
    cols["items"] = np.where(service == 0, cols["items"], 0).astype(np.int32)
    cols["input_tokens"] = np.where(service == 1, cols["input_tokens"], 0).astype(np.int32)
    cols["output_tokens"] = np.where(service == 1, cols["output_tokens"], 0).astype(np.int32)
    trace = RequestBatch(**cols)
    fast = Simulation(sc).run(trace)
    slow = Simulation(sc).run(trace, coalesce_idle=False)
    same(fast, slow)
    assert fast.end_ns == slow.end_ns
    assert np.all(fast.requests.status == STATUS_OK)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["round_robin", "random", "weighted"]), st.integers(0, 1000))
def test_wide_windows_equal_stepping_under_load(policy: str, seed: int) -> None:
    """Dense mixed traffic with report-free routing: metrics-interval windows (the default)
    give exactly the results of stepping every report interval, for any sharding."""
    raw = scenario(policy, seed).raw | {"metrics_interval_ms": 40}  # 40 windows of 1 ms
    sc = parse_scenario(raw)
    dense = trace(seed, 800)
    tr = RequestBatch(**{**dense.columns(), "arrival_ns": dense.arrival_ns * 3})  # lighter
    wide = Simulation(sc).run(tr)
    same(wide, Simulation(sc).run(tr, coalesce_idle=False))
    same(wide, Simulation(sc, shards=3).run(tr))
    assert wide.end_ns == Simulation(sc).run(tr, coalesce_idle=False).end_ns


def test_shards_pickle_at_a_window_boundary_and_resume_identically() -> None:
    """A checkpoint (pickle of every shard between windows) resumes with identical results."""
    import pickle

    from mtia_cluster.engine.shard import Inbox

    sim = Simulation(scenario("round_robin"), shards=2)
    region = np.asarray(sim.topology.cell_region)
    service = np.asarray(sim.topology.cell_service)
    rows_all = trace(3, 400)
    rows_all = rows_all.take(rows_all.region == 0)
    edges = [3_000_000, 6_000_000, 9_000_000, 1 << 40]

    def route(rows: RequestBatch) -> np.ndarray:
        cell = np.zeros(len(rows), dtype=np.int64)
        for s in (0, 1):
            cand = np.flatnonzero((region == 0) & (service == s))
            mine = np.flatnonzero(rows.service == s)
            cell[mine] = cand[np.arange(len(mine)) % len(cand)]
        return cell

    def drive(shards: list, windows: range) -> list:
        outs = []
        for w in windows:
            lo = int(np.searchsorted(rows_all.arrival_ns, edges[w - 1])) if w else 0
            hi = int(np.searchsorted(rows_all.arrival_ns, edges[w]))
            rows = rows_all.take(slice(lo, hi))
            cell = route(rows)
            for shard in shards:
                mine = np.isin(cell, shard.cell_ids)
                outs.append(shard.advance(Inbox(rows.take(mine), cell[mine]), edges[w])[0])
        return outs

    straight = drive(Simulation(scenario("round_robin"), shards=2).shards, range(4))
    resumed = drive(sim.shards, range(2))
    restored = pickle.loads(pickle.dumps(sim.shards))
    resumed += drive(restored, range(2, 4))

    def by_id(parts: list) -> tuple[np.ndarray, np.ndarray]:
        rid = np.concatenate([p.request_id for p in parts])
        fin = np.concatenate([p.finish_ns for p in parts])
        order = np.argsort(rid)
        return rid[order], fin[order]

    a, b = by_id(straight), by_id(resumed)
    assert len(a[0]) == len(rows_all)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
