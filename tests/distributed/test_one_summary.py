"""One truth: `simulate`, `replay` (in-process and on Ray) and `analyze` on the same scenario
and trace print the same verdicts, figures and JSON, and each prints its summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtia_cluster.cli.main import cli
from mtia_cluster.traces.io import read_trace, write_trace

from .conftest import REPO, SCENARIO


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 20 s of traces/demo.parquet (both regions, R&R and LLM services)."""
    table = read_trace(REPO / "traces" / "demo.parquet", end_ns=20 * 10**9)
    out = tmp_path_factory.mktemp("trace") / "t20.parquet"
    write_trace(table, out, {"source": "slice of traces/demo.parquet"})
    return out


def _run(runner, args: list[str]) -> dict:  # type: ignore[no-untyped-def]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    doc: dict = json.loads(res.stdout)
    return doc


def _file(run: Path) -> dict:
    doc: dict = json.loads((run / "summary.json").read_text())
    return doc


@pytest.mark.ray
def test_simulate_replay_ray_and_analyze_agree_exactly(runner, trace, tmp_path):
    pytest.importorskip("ray")
    common = [str(SCENARIO), "--trace", str(trace), "--json"]
    printed = {
        "simulate": _run(runner, ["simulate", *common]),
        "simulate -o": _run(runner, ["simulate", *common, "-o", str(tmp_path / "sim")]),
        "replay in-process": _run(
            runner, ["replay", *common, "-o", str(tmp_path / "ip"), "--address", "inprocess"]
        ),
        "replay ray": _run(runner, ["replay", *common, "-o", str(tmp_path / "ray")]),
    }
    written = {name: _file(tmp_path / name) for name in ("sim", "ip", "ray")}
    reference = written["sim"]
    # what each command prints is what it wrote, and every run wrote the same document
    for name, doc in {**printed, **written}.items():
        assert doc == reference, name
    groups = {(g["region"], g["service"]): g for g in reference["groups"]}
    assert {g["kind"] for g in groups.values()} == {"rr", "llm"}
    assert all(g["verdict"]["result"] == "INVALID" for g in groups.values())  # 20 s < 600 s
    # analyze reads the directory back with its own passes: same verdicts and figures
    rows = {
        (r["region"], r["service"]): r
        for r in _run(runner, ["analyze", str(tmp_path / "ray"), "--json"])["rows"]
        if r["level"] == "region,service"
    }
    assert rows.keys() == groups.keys()
    for key, g in groups.items():
        r = rows[key]
        assert r["verdict"]["result"] == g["verdict"]["result"], key
        assert r["verdict"]["reasons"] == g["verdict"]["reasons"], key
        for figure in ("offered", "completed", "good", "rejected", "failed", "kind"):
            assert r[figure] == g[figure], (key, figure)
        for metric in ("latency_ns", "ttft_ns", "tpot_ns"):
            mine = {q: v for q, v in (g.get(metric) or {}).items() if q in (r.get(metric) or {})}
            assert mine == {q: r[metric][q] for q in mine}, (key, metric)
        for figure in ("utilization", "energy_j", "avg_power_w"):
            assert r[figure] == pytest.approx(g[figure], rel=1e-12), (key, figure)


def test_replay_fail_on_invalid_exits_1_after_printing(runner, trace, tmp_path):
    out = tmp_path / "run"
    args = ["replay", str(SCENARIO), "--trace", str(trace), "-o", str(out)]
    res = runner.invoke(cli, [*args, "--address", "inprocess", "--fail-on-invalid"])
    assert res.exit_code == 1, res.output
    invalid = [f"{g['region']}/{g['service']}" for g in _file(out)["groups"]]
    assert all(name in res.stderr for name in invalid)  # 20 s < 600 s: all INVALID
    assert "INVALID" in res.stdout and (out / "summary.json").is_file()  # printed, written
