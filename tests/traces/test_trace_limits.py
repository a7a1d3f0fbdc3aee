"""Limits before work (issue 11 item 4), trace side: span and per-request sizes checked when
a trace is opened (from Parquet statistics, or the column chunk when a writer left none),
generation size, memory of `inspect` and of the R&R service table following the data (not
the largest value or the span), and nulls in the optional region column following the
documented default (spread by the scenario's weights, like a trace without the column)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.config.limits import ENV, Limits
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.rr import ServiceTable
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators import generate_table
from mtia_cluster.traces.inspect import _Hist, inspect_trace
from mtia_cluster.traces.limits import check_trace_limits, column_range

ROOT = Path(__file__).resolve().parents[2]
RR = str(ROOT / "configs" / "scenarios" / "rr-small.yaml")
LLM = str(ROOT / "configs" / "scenarios" / "llm-small.yaml")
YEAR_NS = 365 * 86_400 * 10**9


def write(
    path: Path, arrivals: list[int], service: str = "feed-ranking", **extra: pa.Array
) -> Path:
    """A trace written raw (no validation), so bad contents reach the readers."""
    n = len(arrivals)
    cols: dict[str, pa.Array] = {
        "request_id": pa.array(range(n), pa.int64()),
        "arrival_ns": pa.array(arrivals, pa.int64()),
        "service": pa.array([service] * n).dictionary_encode(),
    }
    if service == "feed-ranking" and "items" not in extra:
        cols["items"] = pa.array([100] * n, pa.int32())
    cols.update(extra)
    pq.write_table(pa.table(cols), path)
    return path


def one_line_error(args: list[str], *needles: str) -> None:
    result = CliRunner(env={ENV: ""}).invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("command", "arrivals", "extra", "needles"),
    [
        ("simulate", [0, YEAR_NS], {}, ["arrival_ns", "trace_span_s=2,678,400", "31,536,000 s"]),
        ("inspect", [0, 2**63 - 1], {}, ["arrival_ns", "trace_span_s="]),
        (
            "simulate",
            [0, 1],
            {"items": pa.array([1, 10**9], pa.int32())},
            ["items", "1,000,000,000"],
        ),
        ("inspect", [0, 1], {"items": pa.array([1, 2**31 - 1], pa.int32())}, ["items_per_request"]),
    ],
)
def test_trace_sizes_refused_at_open(
    tmp_path: Path,
    command: str,
    arrivals: list[int],
    extra: dict[str, pa.Array],
    needles: list[str],
) -> None:
    path = write(tmp_path / "t.parquet", arrivals, **extra)
    args = (
        ["trace", "inspect", str(path)]
        if command == "inspect"
        else ["simulate", RR, "--trace", str(path)]
    )
    one_line_error(args, "t.parquet", *needles)


def test_tokens_refused_at_open(tmp_path: Path) -> None:
    tokens = pa.array([100, 10**9], pa.int32())
    path = write(tmp_path / "t.parquet", [0, 1], "chat", input_tokens=tokens)
    one_line_error(["simulate", LLM, "--trace", str(path)], "input_tokens", "tokens_per_request")


def test_statistics_absent_reads_the_column(tmp_path: Path) -> None:
    """A writer without statistics: the column chunk is read (same answer, same refusal)."""
    table = pa.table(
        {
            "request_id": pa.array([0, 1, 2], pa.int64()),
            "arrival_ns": pa.array([5, 6, YEAR_NS], pa.int64()),
            "service": pa.array(["a"] * 3).dictionary_encode(),
            "items": pa.array([3, None, 9], pa.int32()),
        }
    )
    path = tmp_path / "nostats.parquet"
    pq.write_table(table, path, write_statistics=False, row_group_size=2)
    pf = pq.ParquetFile(path)
    assert pf.metadata.row_group(0).column(1).statistics is None
    assert column_range(pf, "arrival_ns") == (5, YEAR_NS)
    assert column_range(pf, "items") == (3, 9)
    with pytest.raises(UserError, match="trace_span_s"):
        check_trace_limits(pf, path, Limits())
    check_trace_limits(pf, path, Limits(trace_span_s=366 * 86_400.0))
    with pytest.raises(UserError, match="items_per_request=8"):
        check_trace_limits(pf, path, Limits(trace_span_s=1e9, items_per_request=8))


def test_generation_size_refused_before_drawing() -> None:
    spec = {"duration_s": 1e6, "services": [{"name": "s", "kind": "rr", "rate_per_s": 1e12}]}
    with pytest.raises(UserError, match="generated_requests=100,000,000"):
        generate_table(spec)
    with pytest.raises(UserError, match=r"duration_s.*trace_span_s"):
        generate_table({**spec, "duration_s": 1e8})


@settings(max_examples=60)
@given(st.lists(st.lists(st.integers(0, 2**31 - 1), max_size=40), min_size=1, max_size=4))
def test_sparse_histogram_is_exact(batches: list[list[int]]) -> None:
    """Quantiles of the sparse histogram are the order statistics of all values."""
    hist = _Hist()
    for b in batches:
        hist.add(np.asarray(b, dtype=np.int32))
    values = np.sort(np.concatenate([np.asarray(b, dtype=np.int64) for b in batches]))
    got = hist.summary()
    if not len(values):
        assert got is None
        return
    assert got is not None
    n = len(values)
    assert (got["count"], got["min"], got["max"]) == (n, values[0], values[-1])
    for q in (0.5, 0.9, 0.99):
        assert got[f"p{round(q * 100)}"] == values[math.ceil(q * n) - 1]
    assert len(hist.values) == len(np.unique(values))  # memory: distinct values only


def test_inspect_huge_values_and_span_with_raised_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory follows rows: a 3-row trace with items 2**31-1 over a year inspects fine."""
    monkeypatch.setenv(ENV, "items_per_request=3e9,trace_span_s=4e7")
    items = pa.array([1, 2**31 - 1, 7], pa.int32())
    path = write(tmp_path / "t.parquet", [0, 60 * 10**9, YEAR_NS], items=items)
    out = inspect_trace(path)
    assert out["sizes"]["items"]["max"] == 2**31 - 1
    assert out["sizes"]["items"]["p50"] == 7
    assert len(out["per_minute_counts"]) == YEAR_NS // (60 * 10**9) + 1
    assert sum(out["per_minute_counts"]) == 3


def test_service_table_costs_batches_beyond_it_directly() -> None:
    """A request larger than max_items is costed like the table would, without growing it."""

    def cost(b: np.ndarray) -> np.ndarray:
        return (3e-6 + 1e-7 * np.asarray(b, dtype=np.float64)) * 1.01

    small, big = ServiceTable.build(cost, 4), ServiceTable.build(cost, 1000)
    sizes = np.array([1, 4, 5, 999, 3, 1000])
    assert np.array_equal(small.lookup(sizes), big.lookup(sizes))
    assert len(small.table_ns) == 5


def region_column(tmp_path: Path, name: str, regions: list[str | None] | None) -> Path:
    extra = (
        {} if regions is None else {"region": pa.array(regions, pa.string()).dictionary_encode()}
    )
    return write(tmp_path / name, [i * 200_000 for i in range(40)], **extra)


def test_null_regions_follow_the_default(tmp_path: Path) -> None:
    """All-null region column == no column (the weights spread them); mixed nulls keep the
    rows that have a region where they are."""
    sc = load_scenario(ROOT / "configs" / "scenarios" / "multi-region.yaml")

    def run(path: Path) -> np.ndarray:
        table = pq.read_table(path)
        table = table.set_column(2, "service", pa.array(["rr-ranking"] * 40).dictionary_encode())
        pq.write_table(table, path)
        trace = load_trace(path, sc)
        return Simulation(sc).plane.assign_regions(trace).region

    none = run(region_column(tmp_path, "none.parquet", None))
    nulls = run(region_column(tmp_path, "nulls.parquet", [None] * 40))
    assert np.array_equal(none, nulls)
    assert set(none.tolist()) == {0, 1}  # both regions drawn by weight
    mixed = run(region_column(tmp_path, "mixed.parquet", ["eu-west", None] * 20))
    assert np.all(mixed[::2] == 1)
    assert set(mixed.tolist()) <= {0, 1}


def test_null_regions_in_inspect_and_simulate(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", [0, 1000, 2000], region=pa.array(["us-east", None, None]))
    out = inspect_trace(path)
    assert out["rows_without_region"] == 2
    assert out["regions"]["us-east"]["rows"] == 1
    result = CliRunner(env={ENV: ""}).invoke(cli, ["simulate", RR, "--trace", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the one summary (results/summary.py)
    assert sum(g["offered"] for g in summary["groups"]) == 3
