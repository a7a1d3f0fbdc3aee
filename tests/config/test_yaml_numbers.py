"""Exponent notation reads as a number in every config file and `--set`: `1e15` and
`2.5E3` are floats (YAML 1.2, JSON), not the text '1e15' that YAML 1.1 makes of them, which a
numeric field then refused with "expected a number (got '1e15')"."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.config.yaml_limits import load_limited

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "configs" / "plans" / "rr-and-chat-3-regions.yaml"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_in_exponent_notation_reads_back(value: float) -> None:
    text = f"{value:.17e}".replace("e+", "e")  # 1.5e15, not 1.5e+15
    assert load_limited(f"x: {text}") == {"x": value}


@pytest.mark.parametrize(
    ("text", "value"), [("1e15", 1e15), ("-2.5E3", -2500.0), (".5e-3", 5e-4), ("+1e0", 1.0)]
)
def test_exponent_forms(text: str, value: float) -> None:
    got = load_limited(f"x: {text}")["x"]
    assert isinstance(got, float) and math.isclose(got, value, rel_tol=0, abs_tol=0)


@pytest.mark.parametrize("text", ["1e", "e15", "1e15x", "1.2.3e4", "v1e5", "1e5s"])
def test_other_text_stays_text(text: str) -> None:
    assert load_limited(f"x: {text}") == {"x": text}


def test_a_plan_with_peak_rps_1e5_is_read_as_a_number(tmp_path: Path) -> None:
    """`plan` checks the plan file, then -o, before any work: with 1.5e5 it gets past the
    plan and is refused for the -o (a user's file) instead."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.read_text().replace("peak_rps: 150000,", "peak_rps: 1.5e5,"))
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    res = CliRunner().invoke(cli, ["plan", str(plan), "-o", str(mine)])
    assert res.exit_code == 2 and "exists and is not a directory" in res.output, res.output
    assert mine.read_text() == "mine"


def test_set_with_exponent_equals_the_decimal() -> None:
    never = "never-read.parquet"
    cfg = str(ROOT / "configs" / "scenarios" / "rr-small.yaml")
    runner = CliRunner()
    a = runner.invoke(cli, ["simulate", cfg, "--trace", never, "--set", "report_interval_ms=1e1"])
    b = runner.invoke(cli, ["simulate", cfg, "--trace", never, "--set", "report_interval_ms=10"])
    assert a.exit_code == b.exit_code == 2
    assert a.output == b.output and "never-read.parquet: file not found" in a.output, a.output
