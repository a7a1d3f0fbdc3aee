"""One truth across outputs (issue: QA "one truth" walkthrough): on the shipped global-spill
scenario with `policy: home` (us-east rejects its requests while it is down; ap-northeast gets
no traffic), summary.json, the `simulate` console, `analyze` (console and --json) and the
HTML report show the same verdicts, the same per-token cost figures and the rejected counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli
from mtia_cluster.results.analysis.report import GROUP_HEADERS, group_rows

ROOT = Path(__file__).resolve().parents[2]
PER_TOKEN = ("usd_per_m_output_tokens", "co2e_g_per_output_token")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """summary.json, `analyze --json`, the `analyze` console and the HTML report of one run."""
    tmp = tmp_path_factory.mktemp("truth")
    runner = CliRunner()
    scenario = ROOT / "configs" / "scenarios" / "global-spill.yaml"
    args = ["simulate", str(scenario), "--trace", str(ROOT / "traces" / "demo.parquet")]
    args += ["--set", "global_routing.policy=home", "-o", str(tmp / "out"), "--json"]
    assert runner.invoke(cli, args).exit_code == 0
    got = runner.invoke(cli, ["analyze", str(tmp / "out"), "--json"])
    console = runner.invoke(cli, ["analyze", str(tmp / "out"), "--plot", str(tmp / "r.html")])
    assert got.exit_code == 0 and console.exit_code == 0, console.output
    return {
        "summary": json.loads((tmp / "out" / "summary.json").read_text()),
        "analysis": json.loads(got.stdout),
        "console": console.stdout,
        "html": (tmp / "r.html").read_text(),
    }


def _summary_row(summary: dict[str, Any], region: str, service: str) -> dict[str, Any] | None:
    """summary.json's row of (region, service): a group, a service, a region or the fleet."""
    if (region, service) == ("*", "*"):
        return summary["fleet"]
    rows = summary["groups"] + summary["services"] + summary["regions"]
    return next((r for r in rows if (r["region"], r["service"]) == (region, service)), None)


def test_a_group_without_requests_is_not_judged_anywhere(run: dict[str, Any]) -> None:
    summary = run["summary"]
    quiet = [g for g in summary["groups"] if g["region"] == "ap-northeast"]
    assert quiet and all(g["offered"] == 0 for g in quiet)
    assert {g["verdict"]["result"] for g in quiet} == {"NO_REQUESTS"}
    assert _summary_row(summary, "ap-northeast", "*")["verdict"]["result"] == "NO_REQUESTS"
    compared = 0
    for row in run["analysis"]["rows"]:
        mine = _summary_row(summary, row["region"], row["service"])
        if mine is not None and "verdict" in mine:
            assert row["verdict"]["result"] == mine["verdict"]["result"], row
            compared += 1
    assert compared == len(run["analysis"]["rows"])
    assert "NO_REQUESTS" in run["html"] and "INVALID ap-northeast" not in run["console"]


def test_per_token_costs_of_multi_service_rows_are_summary_json_s(run: dict[str, Any]) -> None:
    for row in run["analysis"]["rows"]:
        mine = _summary_row(run["summary"], row["region"], row["service"])
        assert mine is not None
        for key in PER_TOKEN:
            assert row.get(key) == mine.get(key), (row["region"], row["service"], key)
    fleet = [r for r in run["analysis"]["rows"] if (r["region"], r["service"]) == ("*", "*")]
    assert fleet[0]["usd_per_m_output_tokens"] is None  # its cost includes R&R hardware


def test_rejected_requests_are_named_on_the_console(run: dict[str, Any]) -> None:
    summary = run["summary"]
    rejected = {(g["region"], g["service"]): g["rejected"] for g in summary["groups"]}
    assert sum(rejected.values()) == summary["fleet"]["rejected"] > 0
    rows = group_rows(summary)  # the simulate console's table
    for col in ("rejected", "failed"):
        i = GROUP_HEADERS.index(col)
        assert [r[i] for r in rows] == [g[col] for g in summary["groups"]]
    header = run["console"].splitlines()[1].split()
    assert "rejected" in header and "failed" in header
    fleet_line = next(s for s in run["console"].splitlines() if s.startswith("*             *"))
    assert f" {summary['fleet']['rejected']} " in fleet_line
