"""Batches to engine-style numpy columns: name mapping across differing dictionaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mtia_cluster.errors import UserError
from mtia_cluster.traces.columns import to_numpy_columns
from mtia_cluster.traces.io import read_trace_batches, write_trace


def test_columns_follow_names_not_dictionary_positions(tmp_path: Path, table: pa.Table) -> None:
    path = write_trace(table, tmp_path / "t.parquet", {})
    services, regions = ["llm", "rr", "other"], ["west", "east"]
    got = [to_numpy_columns(b, services, regions) for b in read_trace_batches(path, batch_rows=3)]
    svc = np.concatenate([g["service"] for g in got])
    reg = np.concatenate([g["region"] for g in got])
    assert [services[i] for i in svc] == table.column("service").to_pylist()
    assert [regions[i] for i in reg] == table.column("region").to_pylist()
    items = np.concatenate([g["items"] for g in got])
    tokens = np.concatenate([g["input_tokens"] for g in got])
    is_rr = np.array(table.column("service").to_pylist()) == "rr"
    assert np.all(items[~is_rr] == 0) and np.all(items[is_rr] == 200)
    assert np.all(tokens[is_rr] == 0) and np.all(tokens[~is_rr] == 100)
    assert np.all(np.concatenate([g["session_id"] for g in got]) == -1)


def test_unknown_service_and_missing_region(tmp_path: Path, table: pa.Table) -> None:
    batch = table.drop(["region"]).to_batches()[0]
    cols = to_numpy_columns(batch, ["rr", "llm"], ["east"])
    assert np.all(cols["region"] == -1)
    with pytest.raises(UserError, match="service not in the configuration"):
        to_numpy_columns(batch, ["rr"], None, file="t.parquet")
