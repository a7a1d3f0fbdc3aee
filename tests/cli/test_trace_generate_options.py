"""`trace generate` from options names the option a refused value came from (`--rate`), not
the field of the mix spec the options are turned into (`services[0].rate_per_s`), which the
user never wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rate", "0"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--arrivals", "gamma", "--cv", "-1"], "--cv"),
        (["--duration", "0"], "--duration"),
        (["--duration", "1e300"], "--duration"),
        (["--requests", "0"], "--requests"),
        (["--requests", "1000000000000"], "--requests"),
        (["--peak-to-trough", "0.5"], "--peak-to-trough"),
        (["--items", "lognormal", "--items-mean", "100", "--items-p99", "50"], "--items-mean"),
        (["--service", ""], "--service"),
    ],
)
def test_refusal_names_the_option(tmp_path: Path, args: list[str], option: str) -> None:
    out = tmp_path / "t.parquet"
    res = CliRunner().invoke(cli, ["trace", "generate", *args, "-o", str(out)])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and line.startswith(f"error: {option}"), line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_spec_file_keeps_its_field_names(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("duration_s: 60\nservices: [{name: s, kind: rr, rate_per_s: 0}]\n")
    res = CliRunner().invoke(
        cli, ["trace", "generate", "--spec", str(spec), "-o", str(tmp_path / "t.parquet")]
    )
    assert res.exit_code == 2 and f"{spec}: services[0].rate_per_s: must be > 0" in res.output
