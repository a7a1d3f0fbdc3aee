"""Shared fixtures: a short slice of the shipped demo trace and a run comparator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from mtia_cluster.results.schema import REQUEST_COLUMNS
from mtia_cluster.traces.io import read_trace, write_trace

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "configs" / "scenarios" / "multi-region.yaml"


@pytest.fixture(scope="session")
def short_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 120 s of traces/demo.parquet (both regions, both services)."""
    table = read_trace(REPO / "traces" / "demo.parquet", end_ns=120 * 10**9)
    out = tmp_path_factory.mktemp("trace") / "short.parquet"
    write_trace(table, out, {"source": "slice of traces/demo.parquet"})
    return out


def requests_of(run: Path):
    t = ds.dataset(run / "requests", partitioning="hive").to_table()
    t = t.sort_by("request_id")
    return {c: t.column(c).to_pylist() for c in REQUEST_COLUMNS}


def summary_of(run: Path) -> dict:
    s = json.loads((run / "summary.json").read_text())
    return {(g["region"], g["service"]): g for g in s["groups"]}


def assert_same_run(a: Path, b: Path) -> None:
    """Identical requests; identical summary figures (floats to 1e-9: summation order)."""
    assert requests_of(a) == requests_of(b)
    sa, sb = summary_of(a), summary_of(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        _close(sa[key], sb[key], str(key))


def _close(x, y, where):
    if isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _close(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, float) and isinstance(y, float):
        assert np.isclose(x, y, rtol=1e-9, atol=0), f"{where}: {x} != {y}"
    else:
        assert x == y, f"{where}: {x!r} != {y!r}"
