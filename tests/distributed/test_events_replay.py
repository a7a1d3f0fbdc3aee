"""Fleet events in a replay: region shards apply them exactly as the single-process engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtia_cluster.cli.main import cli
from mtia_cluster.distributed.runner import ReplayOptions, replay
from mtia_cluster.errors import UserError

from .conftest import SCENARIO, assert_same_run, requests_of

EVENTS = (
    "events=["
    "{at_s: 20, kind: fail, region: us-east, hosts: [0], on_failure: retry},"
    "{at_s: 50, kind: repair, region: us-east, hosts: [0]},"
    "{at_s: 30, kind: fail, region: eu-west, hosts: [3], on_failure: fail},"
    "{at_s: 40, kind: drain, region: eu-west, hosts: [1, 2]},"
    "{at_s: 70, kind: undrain, region: eu-west, hosts: [1, 2]}]"
)


@pytest.mark.parametrize("shards", [None, 1])  # one shard per region; one shard for both
def test_region_shards_apply_events_like_the_engine(
    runner, short_trace: Path, tmp_path: Path, shards: int | None
) -> None:
    ref = tmp_path / "simulate"
    r = runner.invoke(
        cli,
        ["simulate", str(SCENARIO), "--trace", str(short_trace), "-o", str(ref), "--set", EVENTS],
    )
    assert r.exit_code == 0, r.output
    out = replay(
        SCENARIO,
        short_trace,
        tmp_path / "replay",
        ReplayOptions(address="inprocess", overrides=(EVENTS,), shards=shards),
    )
    assert_same_run(out, ref)
    # the manifest lists the events applied, as the single-process run's does
    applied = json.loads((out / "manifest.json").read_text())["fleet_events"]
    assert applied == json.loads((ref / "manifest.json").read_text())["fleet_events"]
    assert [(e["kind"], e["region"]) for e in applied] == [
        ("fail", "us-east"),
        ("fail", "eu-west"),
        ("drain", "eu-west"),
        ("repair", "us-east"),
        ("undrain", "eu-west"),
    ]
    rows = requests_of(out)
    late_llm = [
        st
        for st, reg, svc, arr in zip(
            rows["status"], rows["region"], rows["service"], rows["arrival_ns"], strict=True
        )
        if reg == "eu-west" and svc == "llm-chat" and arr >= 30 * 10**9
    ]
    assert late_llm and set(late_llm) == {"rejected"}  # its only LLM host failed at 30 s


def test_coordinator_driven_placements_refuse_events(short_trace: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="own whole regions"):
        replay(
            SCENARIO,
            short_trace,
            tmp_path / "x",
            ReplayOptions(address="inprocess", overrides=(EVENTS,), placement="host"),
        )
    assert not (tmp_path / "x").exists()
