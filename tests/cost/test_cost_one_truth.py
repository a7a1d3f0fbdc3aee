"""A cost figure is one figure (#19): `simulate`'s console table, its --json document, the
summary.json it writes and `analyze` of that directory give the same cost, energy and carbon
(the summary path: results.summarize; the console prints it with the one formatter)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from click.testing import CliRunner

from mtia_cluster import fmt
from mtia_cluster.cli.main import cli
from mtia_cluster.traces.io import write_trace

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "configs" / "scenarios" / "multi-region.yaml"
FIGURES = ("cost_usd", "capex_usd", "energy_cost_usd", "facility_energy_kwh", "co2e_g")


def _trace(path: Path) -> Path:
    n = 3000
    rng = np.random.default_rng(5)
    table = pa.table(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "arrival_ns": np.sort(rng.integers(0, 500_000_000, n)).astype(np.int64),
            "service": pa.array(["rr-ranking"] * n).dictionary_encode(),
            "region": pa.array(rng.choice(["us-east", "eu-west"], n)).dictionary_encode(),
            "items": rng.integers(1, 400, n).astype(np.int32),
        }
    )
    return write_trace(table, path, {"source": "test"})


def _line(stdout: str, region: str, service: str, after: str) -> list[str]:
    """The cells of the row (region, service) of the table printed after header `after`."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:3] == after.split())
    for ln in lines[start:]:
        cells = ln.split()
        if cells[:2] == [region, service]:
            return cells
    raise AssertionError((region, service))


def test_cost_is_identical_in_console_json_summary_and_analyze(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.parquet")
    runner = CliRunner()
    args = ["simulate", str(SCENARIO), "--trace", str(trace)]
    as_json = runner.invoke(cli, [*args, "--json", "-o", str(tmp_path / "out")])
    assert as_json.exit_code == 0, as_json.output
    printed: dict[str, Any] = json.loads(as_json.stdout)
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert printed["fleet"] == written["fleet"] and printed["groups"] == written["groups"]
    fleet = written["fleet"]
    assert fleet["cost_usd"] > 0 and fleet["co2e_g"] > 0
    table = runner.invoke(cli, args)  # summarized in memory, printed as tables
    assert table.exit_code == 0, table.output
    cells = _line(table.stdout, "*", "*", "region service kWh")
    assert cells[2:5] == [
        fmt.number(fleet[k]) for k in ("facility_energy_kwh", "cost_usd", "capex_usd")
    ]
    for g in written["groups"]:
        cells = _line(table.stdout, g["region"], g["service"], "region service kWh")
        assert cells[3] == fmt.number(g["cost_usd"])
    analysis = runner.invoke(cli, ["analyze", str(tmp_path / "out"), "--json"])
    assert analysis.exit_code == 0, analysis.output
    total = next(r for r in json.loads(analysis.stdout)["rows"] if r["level"] == "*")
    for key in FIGURES:  # the same device rows, summed by analyze's own grouping
        assert math.isclose(total[key], fleet[key], rel_tol=1e-12), key
    shown = runner.invoke(cli, ["analyze", str(tmp_path / "out")])
    assert shown.exit_code == 0 and "cost, energy at the wall and carbon" in shown.stdout
    cells = _line(shown.stdout, "*", "*", "region service kWh")
    assert cells[3] == fmt.number(fleet["cost_usd"])
    report = tmp_path / "report.html"
    plotted = runner.invoke(cli, ["analyze", str(tmp_path / "out"), "--plot", str(report)])
    assert plotted.exit_code == 0, plotted.output
    html = report.read_text()
    cost_table = html[html.index('<table class="cost">') :]
    fleet_row = f"<td>*</td><td>*</td><td>{fmt.number(fleet['facility_energy_kwh'])}</td>"
    assert fleet_row + f"<td>{fmt.number(fleet['cost_usd'])}</td>" in cost_table
