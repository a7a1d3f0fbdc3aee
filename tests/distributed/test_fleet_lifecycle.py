"""launch -> status -> replay --fleet -> down, through the CLI, on a local Ray head."""

from __future__ import annotations

import json

import pytest

from mtia_cluster.cli.main import cli
from mtia_cluster.distributed.runner import ReplayOptions, replay

from .conftest import SCENARIO, assert_same_run

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def test_fleet_lifecycle(runner, short_trace, tmp_path, monkeypatch):
    monkeypatch.setenv("MTIA_CLUSTER_HOME", str(tmp_path / "home"))
    if ray.is_initialized():
        ray.shutdown()
    res = runner.invoke(cli, ["launch", str(SCENARIO), "--name", "t1", "--json"])
    try:
        assert res.exit_code == 0, res.output
        launched = json.loads(res.output[res.output.index("{") :])
        assert launched["accelerators"] == 160 and launched["shards"] == 2
        assert launched["accelerators_by_chip"] == {"mtia-2i": 144, "h100": 16}
        again = runner.invoke(cli, ["launch", str(SCENARIO), "--name", "t1"])
        assert again.exit_code == 2 and "down" in again.output
        status = json.loads(runner.invoke(cli, ["status", "--json"]).output)
        assert [(s["name"], s["shards_alive"]) for s in status] == [("t1", 2)]
        out = tmp_path / "on-fleet"
        res = runner.invoke(
            cli, ["replay", "--fleet", "t1", "--trace", str(short_trace), "-o", str(out), "--json"]
        )
        assert res.exit_code == 0, res.output
        assert json.loads((out / "manifest.json").read_text())["fleet"] == "t1"
    finally:
        down = runner.invoke(cli, ["down", "t1"])
    assert down.exit_code == 0, down.output
    assert json.loads(runner.invoke(cli, ["status", "--json"]).output) == []
    gone = runner.invoke(
        cli, ["replay", "--fleet", "t1", "--trace", str(short_trace), "-o", str(tmp_path / "x")]
    )
    assert gone.exit_code == 2 and "no launched fleet" in gone.output
    reference = replay(SCENARIO, short_trace, tmp_path / "ref", ReplayOptions(address="inprocess"))
    assert_same_run(reference, out)


def test_down_unknown_fleet(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("MTIA_CLUSTER_HOME", str(tmp_path / "home"))
    res = runner.invoke(cli, ["down", "nope"])
    assert res.exit_code == 2 and "no launched fleet" in res.output
