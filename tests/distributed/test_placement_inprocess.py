"""Placement independence without Ray: every placement equals the single-process engine."""

from __future__ import annotations

import numpy as np
import pytest

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.distributed.runner import ReplayOptions, replay
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace

from .conftest import SCENARIO, assert_same_run, requests_of

PLACEMENTS = {
    "region": ReplayOptions(address="inprocess"),
    "host": ReplayOptions(address="inprocess", placement="host"),
    "rack": ReplayOptions(address="inprocess", placement="rack"),
    "shards1": ReplayOptions(address="inprocess", shards=1),
    "shards3": ReplayOptions(address="inprocess", shards=3),
}


@pytest.fixture(scope="module")
def runs(short_trace, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {
        name: replay(SCENARIO, short_trace, base / name, opt) for name, opt in PLACEMENTS.items()
    }


@pytest.mark.parametrize("name", [p for p in PLACEMENTS if p != "region"])
def test_every_placement_gives_identical_results(runs, name):
    assert_same_run(runs["region"], runs[name])


def test_equals_the_single_process_engine(runs, short_trace):
    scenario = load_scenario(SCENARIO)
    engine = Simulation(scenario).run(load_trace(short_trace, scenario)).requests
    ours = requests_of(runs["region"])
    assert ours["request_id"] == engine.request_id.tolist()
    for col in (
        "accelerator_id",
        "host_id",
        "start_ns",
        "first_token_ns",
        "finish_ns",
        "batch_size",
    ):
        assert ours[col] == getattr(engine, col).tolist(), col


def test_every_request_exactly_once_and_time_forward(runs, short_trace):
    from mtia_cluster.traces.io import read_trace

    ids = read_trace(short_trace).column("request_id").to_pylist()
    got = requests_of(runs["shards3"])
    assert sorted(got["request_id"]) == sorted(ids) and len(set(got["request_id"])) == len(ids)
    arrival, start = np.array(got["arrival_ns"]), np.array(got["start_ns"])
    first, finish = np.array(got["first_token_ns"]), np.array(got["finish_ns"])
    assert np.all(arrival <= start) and np.all(start <= first) and np.all(first <= finish)


@pytest.mark.parametrize("name", list(PLACEMENTS))
def test_summary_from_shard_statistics_equals_reading_back(runs, name):
    """summary.json and regions/ (merged from the shards' statistics, regions split over
    shards for host/rack/shards3) equal derive() reading the run's requests back."""
    import json

    import pyarrow.parquet as pq

    from mtia_cluster.results.derive import derive
    from mtia_cluster.results.schema import FORMAT_VERSION
    from mtia_cluster.results.verdict import VerdictRules
    from mtia_cluster.results.writer_io import dataset_or_none, request_dataset

    run = runs[name]
    m = json.loads((run / "manifest.json").read_text())
    d = derive(
        request_dataset(run),
        dataset_or_none(run / "devices"),
        services=m["services"],
        regions=m["regions"],
        slos=load_scenario(SCENARIO).slo,
        rules=VerdictRules(),
        interval_ns=m["interval_ns"],
        span_ns=m["simulated_span_ns"],
        check_unique=True,
    )
    expected = json.loads(json.dumps({"format_version": FORMAT_VERSION, **d.summary}))
    assert json.loads((run / "summary.json").read_text()) == expected
    assert pq.read_table(run / "regions").to_pylist() == d.regions.to_pylist()
    assert m["counts"]["requests"] == d.counts["requests"]


@pytest.mark.parametrize("name", ["region", "host"])
def test_replay_never_reads_the_requests_back(short_trace, tmp_path, monkeypatch, name):
    """finalize() merges the shards' statistics: the read-back path is never taken."""
    import mtia_cluster.results.writer as writer

    def refuse(*args, **kwargs):
        raise AssertionError("requests read back")

    monkeypatch.setattr(writer, "derive", refuse)
    out = replay(SCENARIO, short_trace, tmp_path / name, PLACEMENTS[name])
    assert (out / "summary.json").is_file()


@pytest.mark.parametrize("keep", [False, True])
def test_checkpoints_are_removed_on_success_unless_kept(short_trace, tmp_path, keep):
    """Shards checkpoint during the run (cloudpickle under _checkpoints/); a complete run
    keeps them only with keep_checkpoints (replay --keep-checkpoints)."""
    opt = ReplayOptions(address="inprocess", shards=2, checkpoint_windows=50, keep_checkpoints=keep)
    out = replay(SCENARIO, short_trace, tmp_path / "run", opt)
    saved = sorted(p.name for p in (out / "_checkpoints").glob("*.pkl"))
    assert saved == (["shard-0000.pkl", "shard-0001.pkl"] if keep else [])
    assert (out / "_checkpoints").exists() == keep
    ref = replay(SCENARIO, short_trace, tmp_path / "ref", ReplayOptions(address="inprocess"))
    assert_same_run(out, ref)
