"""`replay --fleet NAME` names `--fleet` when it refuses the name (the positional `FLEET` of
`status` and `down` is named `FLEET`); it named `FLEET` or `--name` before."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ("nope", "error: --fleet: no launched fleet of that name (known: none) (got 'nope')"),
        ("Bad_Name", "error: --fleet: fleet names are lowercase letters, digits and '-'"),
    ],
)
def test_replay_fleet_refusal_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fleet: str, message: str
) -> None:
    monkeypatch.setenv("MTIA_CLUSTER_HOME", str(tmp_path))  # no launched fleets
    out = tmp_path / "out"
    trace = str(ROOT / "traces" / "demo.parquet")
    args = ["replay", "--fleet", fleet, "--trace", trace, "-o", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and res.output.startswith(message), res.output
    assert not out.exists()


def test_down_still_names_its_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTIA_CLUSTER_HOME", str(tmp_path))
    res = CliRunner().invoke(cli, ["down", "nope"])
    assert res.exit_code == 2 and res.output.startswith("error: FLEET: no launched fleet")
