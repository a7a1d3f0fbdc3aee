"""Reading and writing traces: round trips, streaming, filters, metadata, atomic writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.limits import ENV
from mtia_cluster.errors import UserError
from mtia_cluster.traces.io import (
    ROW_GROUP_ROWS,
    TraceWriter,
    read_metadata,
    read_trace,
    read_trace_batches,
    write_trace,
)

META = {"source": "test", "licence": "CC0", "generator": "tests", "parameters": {"a": [1, 2]}}


@pytest.fixture(autouse=True, scope="module")
def _format_range_limits() -> Iterator[None]:
    """These properties cover the format's whole int32 count range, so the size limits
    (config/limits.py, tested in test_trace_limits.py) are raised to the format's bounds."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, "items_per_request=2147483647,tokens_per_request=2147483647")
        yield


@st.composite
def traces(draw: st.DrawFn) -> pa.Table:
    """Random valid traces: sorted arrivals, unique (shuffled) ids, optional columns."""
    n = draw(st.integers(1, 300))
    gaps = draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n))
    arrival = np.cumsum(np.asarray(gaps, dtype=np.int64))
    ids = np.asarray(draw(st.permutations(range(n))), dtype=np.int64) * 3 + 7
    services = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    cols = {
        "request_id": pa.array(ids),
        "arrival_ns": pa.array(arrival),
        "service": pa.array(services).dictionary_encode(),
    }
    if draw(st.booleans()):
        items = draw(st.lists(st.none() | st.integers(0, 2**31 - 1), min_size=n, max_size=n))
        cols["items"] = pa.array(items, pa.int32())
    if draw(st.booleans()):
        cols["session_id"] = pa.array(
            draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)), pa.int64()
        )
    return pa.table(cols)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(t=traces())
def test_round_trip_is_identical(tmp_path: Path, t: pa.Table) -> None:
    path = tmp_path / "t.parquet"
    write_trace(t, path, META, overwrite=True)  # examples share tmp_path
    back = read_trace(path, batch_rows=7)
    assert back.column_names == t.column_names
    for name in t.column_names:
        assert back.column(name).to_pylist() == t.column(name).to_pylist(), name


def test_metadata_round_trip(tmp_path: Path, table: pa.Table) -> None:
    path = write_trace(table, tmp_path / "t.parquet", META)
    meta = read_metadata(path)
    assert meta["source"] == "test" and meta["licence"] == "CC0"
    assert meta["parameters"] == {"a": [1, 2]}
    assert meta["rows"] == table.num_rows


def test_file_is_zstd_with_streaming_row_groups(tmp_path: Path) -> None:
    n = ROW_GROUP_ROWS * 2 + 5
    t = pa.table(
        {
            "request_id": np.arange(n),
            "arrival_ns": np.arange(n),
            "service": pa.array(["s"] * n).dictionary_encode(),
        }
    )
    path = write_trace(t, tmp_path / "t.parquet", META)
    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups == 3
    assert md.row_group(0).column(0).compression == "ZSTD"
    batches = list(read_trace_batches(path, batch_rows=100_000))
    assert max(b.num_rows for b in batches) <= 100_000
    assert sum(b.num_rows for b in batches) == n


def test_filters_by_region_service_and_time(tmp_path: Path, table: pa.Table) -> None:
    path = write_trace(table, tmp_path / "t.parquet", META)
    got = read_trace(
        path, regions=["west"], services=["rr"], start_ns=12_000_000, end_ns=18_000_000
    )
    want = [i for i in range(20) if i >= 10 and i % 2 == 0 and 12 <= i < 18]
    assert got.column("request_id").to_pylist() == want
    assert set(got.column("region").to_pylist()) == {"west"}


def test_filter_by_region_without_region_column_is_user_error(
    tmp_path: Path, table: pa.Table
) -> None:
    path = write_trace(table.drop(["region"]), tmp_path / "t.parquet", META)
    with pytest.raises(UserError, match="no region column"):
        read_trace(path, regions=["east"])


def test_writer_leaves_nothing_when_validation_fails(tmp_path: Path, table: pa.Table) -> None:
    bad = table.set_column(1, "arrival_ns", pa.array(np.arange(20)[::-1].astype(np.int64)))
    with pytest.raises(UserError, match="non-decreasing"):
        write_trace(bad, tmp_path / "t.parquet", META)
    assert list(tmp_path.iterdir()) == []


def test_writer_streams_batches_and_checks_across_them(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "t.parquet"
    with (
        pytest.raises(UserError, match="duplicate request id"),
        TraceWriter(path, META, table.column_names) as w,
    ):
        w.write(table)
        w.write(table.set_column(1, "arrival_ns", pa.array(np.full(20, 10**9, dtype=np.int64))))
    assert not path.exists() and list(tmp_path.iterdir()) == []


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(t=traces(), data=st.data())
def test_streaming_check_catches_faults_across_batches(
    tmp_path: Path, t: pa.Table, data: st.DataObject
) -> None:
    """A duplicated id or a step back in time is found wherever it falls relative to batches."""
    if t.num_rows < 2:
        return
    i = data.draw(st.integers(1, t.num_rows - 1))
    batch_rows = data.draw(st.integers(1, 50))
    fault = data.draw(st.sampled_from(["duplicate", "backwards"]))
    if fault == "duplicate":
        ids = t.column("request_id").to_numpy().copy()
        ids[i] = ids[data.draw(st.integers(0, i - 1))]
        bad = t.set_column(0, "request_id", pa.array(ids))
        want = "duplicate request id"
    else:
        arrival = t.column("arrival_ns").to_numpy().copy()
        if arrival[i - 1] == 0:
            return
        arrival[i] = arrival[i - 1] - 1
        arrival[i + 1 :] = np.maximum(arrival[i + 1 :], arrival[i])
        bad = t.set_column(1, "arrival_ns", pa.array(arrival))
        want = f"row {i}, column arrival_ns"
    path = tmp_path / "bad.parquet"
    pq.write_table(bad, path, row_group_size=max(1, batch_rows // 2))
    with pytest.raises(UserError, match=want):
        for _ in read_trace_batches(path, batch_rows=batch_rows):
            pass


@pytest.mark.parametrize("value", [1.5, 3e9, float("inf"), -1.0])
def test_float_counts_must_be_int32_integers(tmp_path: Path, table: pa.Table, value: float) -> None:
    tokens = [float(x) if x is not None else None for x in table.column("input_tokens").to_pylist()]
    tokens[1] = value
    bad = table.set_column(
        table.schema.get_field_index("input_tokens"), "input_tokens", pa.array(tokens, pa.float64())
    )
    pq.write_table(bad, tmp_path / "b.parquet")
    with pytest.raises(UserError, match="row 1, column input_tokens"):
        read_trace(tmp_path / "b.parquet")


def test_float_counts_that_are_integers_are_accepted(tmp_path: Path, table: pa.Table) -> None:
    tokens = [float(x) if x is not None else None for x in table.column("input_tokens").to_pylist()]
    ok = table.set_column(
        table.schema.get_field_index("input_tokens"), "input_tokens", pa.array(tokens, pa.float64())
    )
    pq.write_table(ok, tmp_path / "ok.parquet")
    got = read_trace(tmp_path / "ok.parquet")
    assert got.column("input_tokens").type == pa.int32()
    assert got.column("input_tokens").to_pylist() == table.column("input_tokens").to_pylist()


def test_small_writes_still_make_full_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    n, step = 300_000, 1000
    with TraceWriter(path, META, ["request_id", "arrival_ns", "service"]) as w:
        for start in range(0, n, step):
            ids = np.arange(start, start + step, dtype=np.int64)
            w.write(
                pa.record_batch(
                    {
                        "request_id": ids,
                        "arrival_ns": ids * 10,
                        "service": pa.array(["s"] * step).dictionary_encode(),
                    }
                )
            )
    md = pq.ParquetFile(path).metadata
    assert md.num_rows == n
    assert md.num_row_groups <= 2
    assert read_trace(path).column("request_id").to_pylist() == list(range(n))
