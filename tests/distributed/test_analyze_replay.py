"""analyze, --compare and --plot on real replays of the README scenario (short trace)."""

from __future__ import annotations

import json

from mtia_cluster.cli.main import cli
from mtia_cluster.distributed.runner import ReplayOptions, replay

from .conftest import SCENARIO, summary_of


def test_analyze_compare_plot_on_replays(runner, short_trace, tmp_path):
    a = replay(SCENARIO, short_trace, tmp_path / "a", ReplayOptions(address="inprocess"))
    b = replay(
        SCENARIO,
        short_trace,
        tmp_path / "b",
        ReplayOptions(address="inprocess", overrides=("router.policy=round_robin",)),
    )
    res = runner.invoke(cli, ["analyze", str(a), "--json"])
    assert res.exit_code == 0, res.output
    text = res.output
    assert "rr-ranking" in text and "llm-chat" in text
    rows = {
        (r["region"], r["service"]): r
        for r in json.loads(text)["rows"]
        if r["level"] == "region,service"
    }
    cmp_ = runner.invoke(cli, ["analyze", str(a), "--compare", str(b)])
    assert cmp_.exit_code == 0, cmp_.output
    assert "us-east" in cmp_.output and "eu-west" in cmp_.output
    html = tmp_path / "report.html"
    plot = runner.invoke(cli, ["analyze", str(a), "--plot", str(html)])
    assert plot.exit_code == 0, plot.output
    page = html.read_text()
    assert page.count("<svg") >= 4 and "http://" not in page.replace("http://www.w3.org", "")
    # the analysis agrees with the run's own summary, group by group
    groups = summary_of(a)
    assert rows.keys() == groups.keys()
    for key, g in groups.items():
        assert rows[key]["completed"] == g["completed"] > 0
        assert rows[key]["latency_ns"]["p99"] == g["latency_ns"]["p99"]
