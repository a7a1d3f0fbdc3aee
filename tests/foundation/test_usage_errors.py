"""Command-line usage errors are one line naming what was wrong, exit status 2 (the project's
rule for bad input), for every command: unknown options and commands, missing arguments, bad
option values; nothing runs and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import _COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "configs" / "scenarios" / "rr-small.yaml")


def _run(tmp_path: Path, args: list[str]) -> tuple[int, list[str]]:
    before = sorted(tmp_path.rglob("*"))
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    return res.exit_code, [line for line in res.output.splitlines() if line.strip()]


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_unknown_option_is_one_line_for_every_command(tmp_path: Path, command: str) -> None:
    code, lines = _run(tmp_path, [command, "--no-such-flag-xyz"])
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cli {command}") and "--no-such-flag-xyz" in lines[0]
    assert f"'cli {command} --help'" in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["simulat"], "Did you mean 'simulate'"),
        (["qqqqqq"], "No such command 'qqqqqq'"),
        (["simulate"], "Missing argument 'CONFIG'"),
        (["calibrate", "fit"], "Missing argument 'DATA_DIR'"),
        (["simulate", SCENARIO, "--shards", "x"], "'x'"),
        (["--no-such-top-flag"], "--no-such-top-flag"),
    ],
)
def test_usage_errors_name_the_problem(tmp_path: Path, args: list[str], needle: str) -> None:
    code, lines = _run(tmp_path, args)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: cli") and needle in lines[0], lines


def test_help_is_not_an_error(tmp_path: Path) -> None:
    code, lines = _run(tmp_path, ["simulate", "--help"])
    assert code == 0 and lines[0].startswith("Usage:")
