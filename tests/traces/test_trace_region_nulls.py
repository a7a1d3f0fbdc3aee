"""A trace merged from one with `region` and one without: inspect and simulate read it; its
region-less rows are placed by the scenario's region weights (the documented rule)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from mtia_cluster.cli.main import cli
from mtia_cluster.traces.columns import to_numpy_columns
from mtia_cluster.traces.inspect import inspect_trace
from mtia_cluster.traces.io import read_trace, write_trace

META = {"source": "test", "licence": "test"}


def _merged(tmp_path: Path, runner, small_table) -> Path:
    """`trace transform WITH WITHOUT -o mixed`: 20 rows with a region, 10 without."""
    with_region = write_trace(small_table(20), tmp_path / "with.parquet", META)
    without = small_table(10).drop_columns(["region"])
    without_region = write_trace(without, tmp_path / "without.parquet", META)
    out = tmp_path / "mixed.parquet"
    r = runner.invoke(
        cli, ["trace", "transform", str(with_region), str(without_region), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    return out


def test_merged_trace_keeps_region_less_rows_as_null(tmp_path: Path, runner, make_table) -> None:
    t = read_trace(_merged(tmp_path, runner, make_table))
    assert t.num_rows == 30 and t.column("region").null_count == 10
    (batch,) = t.combine_chunks().to_batches()
    cols = to_numpy_columns(batch, ["rr", "llm"], ["east", "west"])
    assert np.count_nonzero(cols["region"] == -1) == 10
    assert set(cols["region"][cols["region"] >= 0].tolist()) == {0, 1}


def test_inspect_counts_region_less_rows(tmp_path: Path, runner, make_table) -> None:
    path = _merged(tmp_path, runner, make_table)
    summary = inspect_trace(path)
    assert summary["rows_without_region"] == 10
    regions = summary["regions"]
    assert regions["east"]["rows"] == 10 and regions["west"]["rows"] == 10
    r = runner.invoke(cli, ["trace", "inspect", str(path), "--json"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output


def test_simulate_places_region_less_rows_by_weight(tmp_path: Path, runner, make_table) -> None:
    pool = {"model": "svc-det-1ms", "platform": "mtia-2i-rack", "accelerators": 1}
    regions = [
        {
            "name": name,
            "weight": weight,
            "pools": [{"service": "rr", **pool}, {"service": "llm", **pool}],
        }
        for name, weight in (("east", 1.0), ("west", 0.0))  # weight 0: west gets none
    ]
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({"name": "nulls", "regions": regions}))
    path = _merged(tmp_path, runner, make_table)
    r = runner.invoke(cli, ["simulate", str(scenario), "--trace", str(path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{") :])
    per_region: dict[str, int] = {}
    for group in out["groups"]:
        per_region[group["region"]] = per_region.get(group["region"], 0) + group["offered"]
    # east: its 10 rows + all 10 without a region (west's weight is 0); west: its own 10
    assert per_region == {"east": 20, "west": 10}, out["groups"]
