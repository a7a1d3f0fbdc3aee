"""Round trip: engine rows -> shard writers -> run directory -> reader and summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from results_synth import (
    REGIONS,
    SERVICES,
    SLOS,
    make_completed,
    reference_slo_ok,
    sorted_requests,
    write_run,
)

from mtia_cluster.engine.cell import STATUS_NAMES
from mtia_cluster.results import open_results
from mtia_cluster.results.schema import REQUEST_COLUMNS

_SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _split(n: int, shards: int, seed: int) -> list[np.ndarray]:
    """Random disjoint row sets covering 0..n-1."""
    owner = np.random.default_rng(seed).integers(0, shards, n)
    return [np.flatnonzero(owner == s) for s in range(shards)]


@_SETTINGS
@given(n=st.integers(0, 400), seed=st.integers(0, 10_000), shards=st.integers(1, 3))
def test_every_request_exactly_once_with_its_values(
    tmp_path_factory: pytest.TempPathFactory, n: int, seed: int, shards: int
) -> None:
    c = make_completed(n, seed)
    out = write_run(tmp_path_factory.mktemp("run") / "out", c, shards=_split(n, shards, seed))
    res = open_results(out)
    table = sorted_requests(res.requests.to_table())
    assert table.num_rows == n
    assert table.column_names == sorted(REQUEST_COLUMNS)
    order = np.argsort(c.request_id)
    assert table["request_id"].to_numpy().tolist() == c.request_id[order].tolist()
    assert table["region"].to_pylist() == [REGIONS[i] for i in c.region[order]]
    assert table["service"].to_pylist() == [SERVICES[i] for i in c.service[order]]
    assert table["status"].to_pylist() == [STATUS_NAMES[i] for i in c.status[order]]
    latency = (c.finish_ns - c.arrival_ns)[order]
    assert table["latency_ns"].to_numpy().tolist() == latency.tolist()
    assert table["slo_ok"].to_pylist() == [reference_slo_ok(c, int(i)) for i in order]
    assert res.manifest["counts"]["requests"] == n


@_SETTINGS
@given(n=st.integers(1, 400), seed=st.integers(0, 10_000))
def test_summary_counts_and_quantiles_match_numpy(
    tmp_path_factory: pytest.TempPathFactory, n: int, seed: int
) -> None:
    c = make_completed(n, seed)
    out = write_run(tmp_path_factory.mktemp("run") / "out", c, shards=_split(n, 2, seed))
    summary = open_results(out).summary
    groups = {(g["region"], g["service"]): g for g in summary["groups"]}
    assert sum(g["offered"] for g in summary["groups"]) == n
    assert summary["fleet"]["offered"] == n
    for (region, service), g in groups.items():
        rows = (c.region == REGIONS.index(region)) & (c.service == SERVICES.index(service))
        ok = rows & (c.status == 0)
        assert g["offered"] == int(rows.sum())
        assert g["completed"] == int(ok.sum())
        assert g["good"] == sum(reference_slo_ok(c, int(i)) for i in np.flatnonzero(rows))
        lat = (c.finish_ns - c.arrival_ns)[ok]
        for key, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9)):
            if len(lat):
                assert g["latency_ns"][key] == pytest.approx(np.percentile(lat, q), rel=1e-12)
            else:
                assert g["latency_ns"][key] is None
        if service == "chat" and ok.any():
            ttft = (c.first_token_ns - c.arrival_ns)[ok]
            assert g["ttft_ns"]["p99"] == pytest.approx(np.percentile(ttft, 99), rel=1e-12)
    for s in summary["services"]:
        assert s["offered"] == int((c.service == SERVICES.index(s["service"])).sum())


def test_placement_independence_of_the_writer(tmp_path: Path) -> None:
    """The same rows written by 1 shard or 3 shards in other chunks give identical results."""
    n = 3000
    c = make_completed(n, seed=42)
    one = write_run(tmp_path / "one", c, shards=[np.arange(n)], windows=1, row_group_rows=10_000)
    three = write_run(tmp_path / "three", c, shards=_split(n, 3, seed=1), windows=5)
    a, b = open_results(one), open_results(three)
    assert sorted_requests(a.requests.to_table()).equals(sorted_requests(b.requests.to_table()))
    assert a.summary == b.summary
    key = lambda row: (row["region"], row["interval_start_ns"])  # noqa: E731
    ra = sorted(a.regions.to_table().to_pylist(), key=key)
    rb = sorted(b.regions.to_table().to_pylist(), key=key)
    # intervals cover the span and every finish (some requests finish after the last arrival)
    bins = max(
        2_000_000_000 // 250_000_000, int(c.finish_ns[c.status == 0].max()) // 250_000_000 + 1
    )
    assert ra == rb and len(ra) == len(REGIONS) * bins
    assert len(list((three / "requests").rglob("*.parquet"))) > len(
        list((one / "requests").rglob("*.parquet"))
    )


@pytest.mark.parametrize("services", ["both", "ranker only"])
def test_regions_intervals_count_every_request(tmp_path: Path, services: str) -> None:
    c = make_completed(2000, seed=3)
    if services != "both":
        c = c.take(c.service == 0)
    out = write_run(tmp_path / "out", c, shards=[np.arange(len(c))])
    regions = open_results(out).regions.to_table()
    assert pc.sum(regions["offered"]).as_py() == len(c)
    assert pc.sum(regions["completed"]).as_py() == int((c.status == 0).sum())
    if services == "both":  # R&R and LLM latencies are never pooled into one quantile
        assert regions["latency_p99_ns"].null_count == regions.num_rows
        return
    for region in REGIONS:
        mine = regions.filter(pc.equal(regions["region"].cast("string"), region))
        ok = (c.region == REGIONS.index(region)) & (c.status == 0)
        first = mine.filter(pc.equal(mine["interval_start_ns"], 0))
        in_first = ok & (c.finish_ns < 250_000_000)
        lat = (c.finish_ns - c.arrival_ns)[in_first]
        got = first["latency_p99_ns"][0].as_py()
        assert got == (pytest.approx(np.percentile(lat, 99)) if len(lat) else None)


def test_manifest_records_run_facts(tmp_path: Path) -> None:
    trace = tmp_path / "trace.parquet"
    trace.write_bytes(b"not really parquet, only hashed")
    from mtia_cluster.results import ResultsWriter

    with ResultsWriter(
        tmp_path / "out",
        manifest={"seed": 3, "config": {"a": 1}},
        services=SERVICES,
        regions=REGIONS,
        slos=SLOS,
        trace_path=trace,
    ) as run:
        with run.shard("a") as shard:
            shard.write_completed(make_completed(10, seed=1))
        run.finalize(wall_time_s=2.0, simulated_span_ns=4_000_000_000)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    import hashlib

    assert m["trace"]["sha256"] == hashlib.sha256(trace.read_bytes()).hexdigest()
    assert m["status"] == "complete" and m["seed"] == 3 and m["config"] == {"a": 1}
    assert m["speed"]["simulated_s_per_wall_s"] == pytest.approx(2.0)
    assert m["counts"]["requests"] == 10 and m["counts"]["shards_closed"] == 1
    assert m["slos"]["chat"]["ttft_ns"] == SLOS["chat"].ttft_ns
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_summary_energy_and_utilization_come_from_devices(tmp_path: Path) -> None:
    c = make_completed(500, seed=9)
    out = write_run(tmp_path / "out", c, shards=_split(500, 3, seed=2))
    res = open_results(out)
    assert res.devices is not None
    dev = res.devices.to_table()
    region = dev["region"].cast("string").to_numpy(zero_copy_only=False)
    service = dev["service"].cast("string").to_numpy(zero_copy_only=False)
    energy = dev["energy_j"].to_numpy()
    busy = dev["busy_ns"].to_numpy()
    length = dev["interval_end_ns"].to_numpy() - dev["interval_start_ns"].to_numpy()
    for g in res.summary["groups"]:
        rows = (region == g["region"]) & (service == g["service"])
        assert g["energy_j"] == pytest.approx(energy[rows].sum())
        assert g["utilization"] == pytest.approx(busy[rows].sum() / length[rows].sum())
        assert g["accelerators"] == 1
        assert g["requests_per_j"] == pytest.approx(g["completed"] / energy[rows].sum())
    assert res.summary["fleet"]["energy_j"] == pytest.approx(energy.sum())
    regions = res.regions.to_table()
    assert pc.sum(regions["energy_j"]).as_py() == pytest.approx(energy.sum())
    assert res.summary["fleet"]["avg_power_w"] == pytest.approx(energy.sum() / 2.0)


def test_services_without_slo_are_not_judged(tmp_path: Path) -> None:
    from mtia_cluster.results import ResultsWriter

    c = make_completed(300, seed=4)
    run = ResultsWriter(tmp_path / "o", manifest={}, services=SERVICES, regions=REGIONS)
    with run, run.shard(0) as shard:
        shard.write_completed(c)
    res = open_results(tmp_path / "o")
    table = res.requests.to_table(columns=["slo_ok", "status"])
    assert table["slo_ok"].to_pylist() == [s == "ok" for s in table["status"].to_pylist()]
    for g in res.summary["groups"]:
        assert g["verdict"]["result"] == "NO_SLO"
        assert ("ttft_ns" in g) == (g["service"] == "chat")  # LLM by its output tokens
    assert res.summary["fleet"]["verdict"]["result"] == "NO_SLO"
