"""The shards' summary statistics (results/partials.py) equal reading the requests back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from results_synth import INTERVAL_NS, REGIONS, SERVICES, SLOS, make_completed

from mtia_cluster.errors import UserError
from mtia_cluster.results import ResultsWriter
from mtia_cluster.results.convert import (
    completed_by_region,
    completed_to_table,
    request_file_table,
)
from mtia_cluster.results.derive import derive
from mtia_cluster.results.partials import StatsBuilder
from mtia_cluster.results.schema import FORMAT_VERSION
from mtia_cluster.results.writer_io import dataset_or_none, request_dataset


def _writer(out: Path, slos: dict) -> ResultsWriter:
    return ResultsWriter(
        out,
        manifest={},
        services=SERVICES,
        regions=REGIONS,
        slos=slos,
        interval_ns=INTERVAL_NS,
        row_group_rows=64,
    )


def _from_disk(run: Path, slos: dict, span_ns: int | None) -> tuple[dict, object]:
    """What derive() computes from the published run's Parquet parts."""
    manifest = json.loads((run / "manifest.json").read_text())
    d = derive(
        request_dataset(run),
        dataset_or_none(run / "devices"),
        services=SERVICES,
        regions=REGIONS,
        slos=slos,
        rules=ResultsWriter(run.parent / "x", manifest={}, services=[], regions=[]).rules,
        interval_ns=INTERVAL_NS,
        span_ns=span_ns,
        check_unique=True,
    )
    assert manifest["counts"]["requests"] == d.counts["requests"]
    summary = json.loads(json.dumps({"format_version": FORMAT_VERSION, **d.summary}))
    return summary, d.regions


def _assert_identical(run: Path, slos: dict, span_ns: int | None) -> None:
    summary, regions = _from_disk(run, slos, span_ns)
    assert json.loads((run / "summary.json").read_text()) == summary
    written = pq.read_table(run / "regions").to_pylist()
    assert written == regions.to_pylist()  # type: ignore[attr-defined]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(0, 400),
    seed=st.integers(0, 10_000),
    shards=st.integers(1, 4),
    chunk=st.integers(1, 200),
    chat_slo=st.booleans(),
    give_span=st.booleans(),
)
def test_shard_statistics_equal_derive(
    tmp_path_factory, n, seed, shards, chunk, chat_slo, give_span
):
    """Requests of every region dealt at random over shards and written in chunks: the
    merged shard statistics give the same summary.json and regions/ as reading back."""
    slos = SLOS if chat_slo else {"ranker": SLOS["ranker"]}
    c = make_completed(n, seed=seed)
    owner = np.random.default_rng(seed).integers(0, shards, n)
    out = tmp_path_factory.mktemp("p") / "run"
    span_ns = 2_500_000_000 if give_span else None
    with _writer(out, slos) as run:
        for s in range(shards):
            rows = np.flatnonzero(owner == s)
            with run.shard(s) as w:
                for i in range(0, len(rows), chunk):
                    w.write_completed(c.take(rows[i : i + chunk]))
        run.finalize(simulated_span_ns=span_ns, expected_requests=n)
        assert run.derived_from == "shard statistics"
    _assert_identical(out, slos, span_ns)


def test_restarted_shard_rebuilds_its_statistics_from_its_parts(tmp_path: Path) -> None:
    """A writer reopened after a checkpoint (a restarted actor) re-reads only its committed
    parts; its statistics, shipped to finalize, still equal reading everything back."""
    c = make_completed(300, seed=5)
    out = tmp_path / "out"
    with _writer(out, SLOS) as run:
        first = run.target.open_shard("s0")
        first.write_completed(c.take(slice(0, 100)))
        first.checkpoint()
        first.write_completed(c.take(slice(100, 200)))  # lost with the actor
        again = run.target.open_shard("s0")
        again.write_completed(c.take(slice(100, 300)))
        stats = again.close()
        assert stats.rows == 300
        run.finalize(shard_stats={"s0": stats}, expected_requests=300)
        assert run.derived_from == "shard statistics"
    _assert_identical(out, SLOS, None)


def test_stats_not_covering_every_shard_fall_back_to_reading(tmp_path: Path) -> None:
    c = make_completed(60, seed=2)
    with _writer(tmp_path / "out", SLOS) as run:
        with run.target.open_shard("elsewhere") as w:  # another process: stats not shipped
            w.write_completed(c.take(slice(0, 30)))
        with run.shard("here") as w:
            w.write_completed(c.take(slice(30, 60)))
        run.finalize(expected_requests=60)
        assert run.derived_from == "requests read back"
    _assert_identical(tmp_path / "out", SLOS, None)


def test_wrong_row_count_or_duplicate_in_a_shard_fails(tmp_path: Path) -> None:
    c = make_completed(40, seed=3)
    run = _writer(tmp_path / "a", SLOS)
    with run.shard(0) as w:
        w.write_completed(c)
    with pytest.raises(UserError, match="40 requests for 41"):
        run.finalize(expected_requests=41)
    run = _writer(tmp_path / "b", SLOS)
    w = run.shard(0)
    w.write_completed(c.take(slice(0, 10)))
    w.write_completed(c.take(slice(5, 10)))
    with pytest.raises(UserError, match="more than once"):
        w.close()


@pytest.mark.parametrize("ids", [[5, 6, 7, 5], [0, 10**12, 3, 10**12], [-(10**15), 4, 10**15, 4]])
def test_duplicate_found_for_dense_and_sparse_ids(ids) -> None:
    from mtia_cluster.results.partials import check_unique_ids

    with pytest.raises(UserError, match="more than once"):
        check_unique_ids([np.array(ids[:2], dtype=np.int64), np.array(ids[2:], dtype=np.int64)])
    check_unique_ids([np.array(sorted(set(ids)), dtype=np.int64)])  # no duplicate: passes


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(1, 400), seed=st.integers(0, 10_000), chunk=st.integers(1, 150))
def test_one_service_regions_share_their_kept_latencies(tmp_path_factory, n, seed, chunk):
    """Kept values (the in-process builder): a region serving one service keeps its ok
    latencies once, the group's values being the region's sorted interval values (the same
    array). A shard writer keeps none (bounded: histograms, counts); every figure of its
    run still equals reading the parts back and numpy's quantiles over the group's ok
    latencies."""
    c = make_completed(n, seed=seed)
    c = dataclasses.replace(c, service=(c.region % len(SERVICES)).astype(np.int32))
    out = tmp_path_factory.mktemp("s") / "run"
    kept = StatsBuilder(SERVICES, SLOS, INTERVAL_NS, check_unique=False)
    with _writer(out, SLOS) as run:
        with run.shard(0) as w:
            for i in range(0, n, chunk):
                w.write_completed(c.take(slice(i, i + chunk)))
                for _, rows in completed_by_region(c.take(slice(i, i + chunk))):
                    table = completed_to_table(rows, services=SERVICES, regions=REGIONS, slos=SLOS)
                    kept.add(REGIONS[int(rows.region[0])], request_file_table(table))
        bounded = w.stats
        run.finalize(expected_requests=n)
    assert bounded is not None and bounded.bounded
    values = kept.result()
    for (region, service), p in values.groups.items():
        assert p.latency[0] is values.intervals[region].latency_sorted
        rows = (c.region == REGIONS.index(region)) & (c.status == 0)
        expected = np.sort((c.finish_ns - c.arrival_ns)[rows])
        assert np.array_equal(np.sort(np.concatenate(p.latency)), expected), (region, service)
        b = bounded.groups[(region, service)]
        assert not b.latency and b.hists is not None and b.hists["latency"].n == len(expected)
        assert len(bounded.intervals[region].latency_sorted) == 0
    summary = json.loads((out / "summary.json").read_text())
    for g in summary["groups"]:
        rows = (c.region == REGIONS.index(g["region"])) & (c.status == 0)
        rows &= c.service == SERVICES.index(g["service"])
        if rows.any():
            want = np.quantile((c.finish_ns - c.arrival_ns)[rows], 0.99)
            assert g["latency_ns"]["p99"] == float(want)
    _assert_identical(out, SLOS, None)
