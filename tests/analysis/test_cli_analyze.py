"""`mtia-cluster analyze` through click's runner: tables, JSON, compare, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from analysis_synth import Spec, write
from click.testing import CliRunner

from mtia_cluster.cli.main import cli
from mtia_cluster.results import ResultsWriter


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    a = write(root / "a", Spec(per_group=800, drop_every=40))
    b = write(root / "b", Spec(per_group=800, slow_factor=0.5, seed=3))
    return a, b


def test_table_has_every_group_and_total(runner: CliRunner, runs: tuple[Path, Path]) -> None:
    result = runner.invoke(cli, ["analyze", str(runs[0])])
    assert result.exit_code == 0, result.output
    main, costs = result.output.split("\ncost, energy at the wall and carbon")
    lines = main.splitlines()
    header = next(ln for ln in lines if ln.startswith("region"))
    for col in ("good/s", "p99 ms", "p99.9 ms", "ttft p99 ms", "power W", "req/J", "verdict"):
        assert col in header
    body = [ln.split() for ln in lines if ln.startswith(("us-east", "eu-west", "*"))]
    cost_body = [ln.split() for ln in costs.splitlines() if ln.startswith(("us", "eu", "*"))]
    assert [r[:2] for r in cost_body] == [r[:2] for r in body]  # the cost table (#19)
    assert [r[:2] for r in body] == [
        ["us-east", "ranker"],
        ["us-east", "chat"],
        ["eu-west", "ranker"],
        ["eu-west", "chat"],
        ["us-east", "*"],
        ["eu-west", "*"],
        ["*", "ranker"],
        ["*", "chat"],
        ["*", "*"],
    ]
    assert body[0][-1] == "INVALID"
    assert any(ln.startswith("INVALID us-east/ranker: latency:") for ln in lines)


def test_json_by_generation_window(runner: CliRunner, runs: tuple[Path, Path]) -> None:
    result = runner.invoke(
        cli, ["analyze", str(runs[0]), "--json", "--by", "generation", "--window", "2s"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["window_ns"] == 2_000_000_000 and doc["by"] == ["generation"]
    rows = [r for r in doc["rows"] if r["level"] == "generation"]
    gens = {r["generation"] for r in rows}
    assert gens == {"mtia-1", "mtia-2i", "-"}
    assert len(rows) == 3 * 5  # 10 s span in 2 s windows
    assert sum(r["offered"] for r in rows) == 4 * 800
    assert all(r["verdict"] is None for r in rows)


def test_compare_deltas_and_who_meets_slo(runner: CliRunner, runs: tuple[Path, Path]) -> None:
    a, b = runs
    result = runner.invoke(cli, ["analyze", str(a), "--compare", str(b), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    rows = {(r["level"], r["region"], r["service"]): r for r in doc["rows"]}
    fast = rows[("region,service", "eu-west", "ranker")]
    p99 = fast["figures"]["latency_p99_ms"]
    assert p99["b"] == pytest.approx(p99["a"] / 2, rel=0.02)
    assert p99["delta"] == pytest.approx(p99["b"] - p99["a"])
    assert p99["relative"] == pytest.approx((p99["b"] - p99["a"]) / p99["a"])
    assert fast["verdict"] == {"a": "INVALID", "b": "VALID"}
    assert fast["meets_slo"] == "b"
    assert rows[("region,service", "us-east", "ranker")]["meets_slo"] == "neither"
    text = runner.invoke(cli, ["analyze", str(a), "--compare", str(b)])
    assert text.exit_code == 0
    assert "only B meets SLO" in text.output
    assert "latency_p99_ms (ms)" in text.output


def _one_line_exit_2(runner: CliRunner, args: list[str], needle: str) -> None:
    result = runner.invoke(cli, ["analyze", *args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert "Traceback" not in result.output


def test_missing_dir(runner: CliRunner, tmp_path: Path) -> None:
    _one_line_exit_2(runner, [str(tmp_path / "nope")], "does not exist")


def test_not_a_results_dir(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    _one_line_exit_2(runner, [str(tmp_path / "x")], "not a results directory")
    (tmp_path / "f").write_text("hi")
    _one_line_exit_2(runner, [str(tmp_path / "f")], "not a results directory")


def test_incomplete_run(runner: CliRunner, tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "r", manifest={}, services=["s"], regions=["r1"])
    _one_line_exit_2(runner, [str(tmp_path / "r")], "incomplete run is at")
    _one_line_exit_2(runner, [str(writer.tmp)], "incomplete run")


def test_incompatible_version(runner: CliRunner, runs: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(runs[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = "0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _one_line_exit_2(runner, [str(copy)], "incompatible results format_version")


def test_compare_with_bad_dir(runner: CliRunner, runs: tuple[Path, Path], tmp_path: Path) -> None:
    _one_line_exit_2(runner, [str(runs[0]), "--compare", str(tmp_path)], "not a results")


# the last two: beyond int64 nanoseconds, and a float that overflows to inf (were tracebacks)
@pytest.mark.parametrize(
    "window", ["1 minute", "0s", "-1m", "5", "m", "10000000000h", "9" * 400 + "s"]
)
def test_bad_window(runner: CliRunner, runs: tuple[Path, Path], window: str) -> None:
    _one_line_exit_2(runner, [str(runs[0]), "--window", window], "--window")


@pytest.mark.parametrize("by", ["zone", "region,region", "", "rack,chip"])
def test_bad_by(runner: CliRunner, runs: tuple[Path, Path], by: str) -> None:
    _one_line_exit_2(runner, [str(runs[0]), "--by", by], "--by")


def test_bad_plot_suffix(runner: CliRunner, runs: tuple[Path, Path], tmp_path: Path) -> None:
    _one_line_exit_2(runner, [str(runs[0]), "--plot", str(tmp_path / "p.pdf")], ".html or .png")
    assert not (tmp_path / "p.pdf").exists()
