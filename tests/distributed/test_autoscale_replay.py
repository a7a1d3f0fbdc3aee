"""Autoscaling in a replay: region shards scale their own regions exactly as the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtia_cluster.cli.main import cli
from mtia_cluster.distributed.runner import ReplayOptions, replay
from mtia_cluster.errors import UserError

from .conftest import SCENARIO, assert_same_run

# both services of both regions autoscaled: R&R hosts on busy fraction, LLM replicas on
# requests in flight; short periods and cooldowns so the 120 s slice scales both ways
AUTOSCALING = (
    "autoscaling={"
    "rr-ranking: {min_replicas: 1, initial_replicas: 2, target_utilization: 0.3,"
    " interval_s: 5, upscale_cooldown_s: 5, downscale_cooldown_s: 10},"
    "llm-chat: {min_replicas: 1, target_ongoing_requests: 2, interval_s: 5,"
    " upscale_cooldown_s: 0, downscale_cooldown_s: 10, runtime_init_s: 5}}"
)


def _replay(trace: Path, out: Path, **options: object) -> Path:
    """An in-process replay of the scenario with AUTOSCALING."""
    opts = ReplayOptions(address="inprocess", overrides=(AUTOSCALING,), **options)  # type: ignore[arg-type]
    return replay(SCENARIO, trace, out, opts)


def _autoscale_of(run: Path) -> tuple[list, dict]:
    """The manifest's replica rows and summary.json's autoscale section."""
    rows = json.loads((run / "manifest.json").read_text())["autoscale"]
    return rows, json.loads((run / "summary.json").read_text())["autoscale"]


@pytest.mark.parametrize("shards", [None, 1])  # one shard per region; one shard for both
def test_region_shards_autoscale_like_the_engine(
    runner, short_trace: Path, tmp_path: Path, shards: int | None
) -> None:
    ref = tmp_path / "simulate"
    args = ["simulate", str(SCENARIO), "--trace", str(short_trace), "-o", str(ref)]
    assert runner.invoke(cli, [*args, "--set", AUTOSCALING]).exit_code == 0
    out = _replay(short_trace, tmp_path / "replay", shards=shards)
    assert_same_run(out, ref)
    rows, section = _autoscale_of(out)
    assert (rows, section) == _autoscale_of(ref)
    # both kinds scaled in both regions (the slice's load changes the replica counts)
    scaled = {(r["region"], r["service"]) for r in rows if r["running"] + r["starting"] > 1}
    assert {s for _, s in scaled} == {"rr-ranking", "llm-chat"}
    assert [g["service"] for g in section["groups"]].count("llm-chat") == 2


def test_coordinator_driven_placements_refuse_autoscaling(
    short_trace: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="autoscaling need shards that own whole regions"):
        _replay(short_trace, tmp_path / "x", placement="host")
    assert not (tmp_path / "x").exists()
