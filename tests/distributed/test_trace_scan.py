"""The coordinator's streaming check and the shards' slices equal reading the trace whole.

A scenario where one region lacks a service (its requests are rejected) and traces with and
without a region column (rows without a region get one from the seeded stream)."""

from __future__ import annotations

import copy
import itertools
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.distributed.runner import ReplayOptions, prepare, replay
from mtia_cluster.distributed.trace_scan import (
    RangeReader,
    check_trace,
    region_slice,
    served_chunks,
)
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
from mtia_cluster.errors import UserError
from mtia_cluster.traces.io import read_trace, write_trace

from .conftest import SCENARIO, requests_of


def _scenario_without_chat_in_eu(tmp_path):
    raw = yaml.safe_load(SCENARIO.read_text())
    raw = copy.deepcopy(raw)
    eu = next(r for r in raw["regions"] if r["name"] == "eu-west")
    eu["pools"] = [p for p in eu["pools"] if p["service"] != "llm-chat"]
    path = tmp_path / "no-chat-in-eu.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, parse_scenario(raw, str(path))


@pytest.fixture(params=["with-region", "without-region"])
def trace_path(request, short_trace, tmp_path):
    table = read_trace(short_trace)
    if request.param == "without-region":
        table = table.drop_columns(["region"])
    out = tmp_path / f"{request.param}.parquet"
    write_trace(table, out, {"source": "test"})
    return out


def _whole(plane, path):
    trace = plane.assign_regions(load_trace(path, plane.scenario))
    served = plane.served(trace)
    return trace, served


def _same(a, b):
    for name, col in a.columns().items():
        np.testing.assert_array_equal(col, getattr(b, name), err_msg=name)


def test_check_equals_whole_read(tmp_path, trace_path):
    _, scenario = _scenario_without_chat_in_eu(tmp_path)
    plane = Simulation(scenario).plane
    trace, served = _whole(plane, trace_path)
    check = check_trace(trace_path, plane)
    assert check is not None
    assert check.rows == len(trace) and check.served == int(served.sum())
    _same(check.rejected, trace.take(~served))


def test_slices_partition_the_served_rows(tmp_path, trace_path):
    _, scenario = _scenario_without_chat_in_eu(tmp_path)
    plane = Simulation(scenario).plane
    trace, served = _whole(plane, trace_path)
    want = trace.take(served)
    for regions in ([0], [1], [0, 1]):
        got = region_slice(plane, trace_path, regions)
        _same(got, want.take(np.isin(want.region, regions)))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.integers(0, 10**6), min_size=1, max_size=6),
    group_rows=st.sampled_from([7, 50, 10**6]),
    regions=st.sampled_from([[0], [1], [0, 1]]),
)
def test_time_ranges_partition_the_slice(tmp_path, short_trace, cuts, group_rows, regions):
    """A region shard reads its slice one epoch at a time ([start, end) per call): for any
    cut of time, and row groups of any size, the ranges together are exactly the slice,
    whether each range opens the file, one reader continues its stream, or a reader is
    pickled mid-run (its stream dropped and reopened). Cuts fall on arrivals too (ties at
    a boundary go to the later range)."""
    _, scenario = _scenario_without_chat_in_eu(tmp_path)
    plane = Simulation(scenario).plane
    path = tmp_path / f"groups-{group_rows}.parquet"
    if not path.exists():
        pq.write_table(read_trace(short_trace), path, row_group_size=group_rows)
    arrivals = read_trace(short_trace).column("arrival_ns").to_numpy()
    bounds = sorted({int(arrivals[c % len(arrivals)]) + (c % 3) - 1 for c in cuts})
    whole = region_slice(plane, path, regions)
    edges = [None, *bounds, None]
    ranges = list(itertools.pairwise(edges))
    reader = RangeReader(plane, path, regions)  # one stream, continued range after range
    restarted = RangeReader(plane, path, regions)  # a fresh reader from the middle on
    middle = len(ranges) // 2
    for parts in (
        [region_slice(plane, path, regions, a, b) for a, b in ranges],  # each opens the file
        [reader.read(a, b) for a, b in ranges],
        [restarted.read(a, b) for a, b in ranges[:middle]]
        + [pickle.loads(pickle.dumps(restarted)).read(a, b) for a, b in ranges[middle:]],
    ):
        for part, (a, b) in zip(parts, ranges, strict=True):
            assert a is None or np.all(part.arrival_ns >= a)
            assert b is None or np.all(part.arrival_ns < b)
        _same(RequestBatch.concat(parts), whole)
    trace, served = _whole(plane, short_trace)
    want = trace.take(served)
    _same(whole, want.take(np.isin(want.region, regions)))


def test_replay_with_rejections_equals_engine(tmp_path, short_trace):
    path, scenario = _scenario_without_chat_in_eu(tmp_path)
    run = replay(path, short_trace, tmp_path / "run", ReplayOptions(address="inprocess"))
    engine = Simulation(scenario).run(load_trace(short_trace, scenario)).requests
    ours = requests_of(run)
    assert "rejected" in ours["status"]
    assert ours["request_id"] == engine.request_id.tolist()
    for col in ("accelerator_id", "start_ns", "finish_ns", "batch_size"):
        assert ours[col] == getattr(engine, col).tolist(), col


def test_coordinator_holds_no_trace(tmp_path, short_trace):
    """Neither placement keeps trace rows in the coordinator after the check (only rejected
    ones): region shards read their slices, coordinator-driven windows stream chunks."""
    ready = prepare(SCENARIO, short_trace, ReplayOptions(address="inprocess"))
    assert ready.trace is None and ready.served_rows == read_trace(short_trace).num_rows
    windows = prepare(SCENARIO, short_trace, ReplayOptions(address="inprocess", placement="rack"))
    assert windows.trace is None and windows.served_rows == ready.served_rows


@pytest.mark.parametrize("chunk_rows", [1, 37, 500])
def test_chunks_cut_at_window_boundaries(tmp_path, short_trace, chunk_rows):
    """(Rows without a region are never chunked: such a trace is loaded whole.)"""
    _, scenario = _scenario_without_chat_in_eu(tmp_path)
    plane = Simulation(scenario).plane
    trace, served = _whole(plane, short_trace)
    assert not served.all()  # the rejected rows are left out of the chunks
    step = scenario.report_interval_ns
    chunks = list(served_chunks(plane, short_trace, step, chunk_rows))
    assert len(chunks) > 1 and chunks[-1][1] is None
    assert all(end is not None for _, end in chunks[:-1])
    for (rows, end), (after, _) in itertools.pairwise(chunks):
        assert end % step == 0 and np.all(rows.arrival_ns < end)
        assert np.all(after.arrival_ns >= end)
    _same(RequestBatch.concat([rows for rows, _ in chunks]), trace.take(served))


def test_chunked_windows_equal_the_engine(tmp_path, short_trace):
    """Rack placement (coordinator-driven windows) over many small chunks."""
    path, scenario = _scenario_without_chat_in_eu(tmp_path)
    opt = ReplayOptions(address="inprocess", placement="rack", trace_chunk_rows=40)
    run = replay(path, short_trace, tmp_path / "run", opt)
    engine = Simulation(scenario).run(load_trace(short_trace, scenario)).requests
    ours = requests_of(run)
    assert ours["request_id"] == engine.request_id.tolist()
    for col in ("accelerator_id", "start_ns", "first_token_ns", "finish_ns", "batch_size"):
        assert ours[col] == getattr(engine, col).tolist(), col


def test_fleet_events_need_region_shards(tmp_path, short_trace):
    raw = yaml.safe_load(SCENARIO.read_text())
    raw["events"] = [{"at_s": 10, "kind": "fail", "region": "us-east", "hosts": [0]}]
    path = tmp_path / "events.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert parse_scenario(raw, str(path)).events  # a valid scenario
    assert prepare(path, short_trace, ReplayOptions(address="inprocess")).regions  # accepted
    with pytest.raises(UserError, match="fleet events"):  # coordinator-driven: refused
        prepare(path, short_trace, ReplayOptions(address="inprocess", placement="rack"))
