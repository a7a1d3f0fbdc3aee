"""An SLO bound that rounds to 0 ns is refused naming the file and the field it was written
in (`slo.feed-ranking.p99_ms`, `services[0].slo.p99_ms`, `--slo`); it was refused as a bare
`latency_ns: SLO bound must be a positive integer (ns)`, a name the user never wrote."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
RR_SMALL = ROOT / "configs" / "scenarios" / "rr-small.yaml"
PLAN = ROOT / "configs" / "plans" / "rr-and-chat-3-regions.yaml"


def test_scenario(tmp_path: Path) -> None:
    args = ["simulate", str(RR_SMALL), "--trace", str(tmp_path / "t.parquet")]
    res = CliRunner().invoke(cli, [*args, "--set", "slo.feed-ranking.p99_ms=1e-7"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {RR_SMALL}: slo.feed-ranking.p99_ms: must be at least")


def test_plan_file(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN.read_text().replace("slo: {p99_ms: 100}", "slo: {p99_ms: 1.0e-7}"))
    res = CliRunner().invoke(cli, ["plan", str(plan), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {plan}: services[0].slo.p99_ms: must be at least")
    assert not (tmp_path / "o").exists()


def test_capacity_option() -> None:
    args = ["capacity", str(RR_SMALL), "--service", "feed-ranking", "--chips", "mtia-2i"]
    res = CliRunner().invoke(cli, [*args, "--slo", "p99=0.1ns"])
    assert res.exit_code == 2 and res.output.startswith("error: --slo: must be at least"), (
        res.output
    )


def test_one_nanosecond_is_accepted(tmp_path: Path) -> None:
    args = ["simulate", str(RR_SMALL), "--trace", str(tmp_path / "t.parquet")]
    res = CliRunner().invoke(cli, [*args, "--set", "slo.feed-ranking.p99_ms=1e-6"])
    assert res.exit_code == 2 and "t.parquet: file not found" in res.output, res.output
