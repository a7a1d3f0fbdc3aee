"""The manifest copies the trace's `start_utc` (the wall-clock instant of t = 0) when the
trace records one, and says nothing when it does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtia_cluster.cli.main import cli
from mtia_cluster.paths import configs_dir
from mtia_cluster.traces.generators import generate_table
from mtia_cluster.traces.io import write_trace

SPEC = {
    "name": "t",
    "requests": 40,
    "services": [{"name": "chat", "kind": "llm", "rate_per_s": 2.0}],
}


@pytest.mark.parametrize("start", ["2023-11-16T18:15:46.6805Z", None])
def test_manifest_has_the_traces_start_utc(runner, tmp_path: Path, start: str | None) -> None:
    table, meta = generate_table(SPEC, seed=1)
    if start is not None:
        meta["parameters"]["start_utc"] = start
    trace = write_trace(table, tmp_path / "t.parquet", meta)
    out = tmp_path / "run"
    config = configs_dir() / "scenarios" / "llm-small.yaml"
    res = runner.invoke(cli, ["simulate", str(config), "--trace", str(trace), "-o", str(out)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trace"].get("start_utc") == start
    assert manifest["trace"]["path"] == str(trace.absolute())
