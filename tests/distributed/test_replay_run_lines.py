"""`replay` prints the same run lines as `simulate` (fleet events, autoscaled groups), from
the one function (cli/summary_view.py echo_run_lines)."""

from __future__ import annotations

from pathlib import Path

from mtia_cluster.cli.main import cli

from .conftest import SCENARIO
from .test_autoscale_replay import AUTOSCALING
from .test_events_replay import EVENTS


def _run_lines(output: str) -> list[str]:
    """The event and autoscale lines of a command's console output."""
    return [s for s in output.splitlines() if s.startswith(("event at ", "autoscale "))]


def test_replay_prints_the_run_lines_of_simulate(runner, short_trace: Path, tmp_path: Path) -> None:
    sets = ["--set", EVENTS, "--set", AUTOSCALING]
    sim = runner.invoke(cli, ["simulate", str(SCENARIO), "--trace", str(short_trace), *sets])
    assert sim.exit_code == 0, sim.output
    args = ["replay", str(SCENARIO), "--trace", str(short_trace), "-o", str(tmp_path / "r")]
    rep = runner.invoke(cli, [*args, "--address", "inprocess", *sets])
    assert rep.exit_code == 0, rep.output
    lines = _run_lines(sim.stdout)
    assert sum(s.startswith("event at ") for s in lines) == 5
    assert sum(s.startswith("autoscale ") for s in lines) == 4  # 2 regions x 2 services
    assert _run_lines(rep.stdout) == lines
