"""Global routing in a replay (#16): a region outage spills, and ``replay`` equals
``simulate`` for any placement (spill couples regions, so one shard owns them all).

Hypothesis draws the placement, the outage and which trace rows lose their region.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.distributed.runner import ReplayOptions, replay
from mtia_cluster.traces.io import read_trace, write_trace

from .conftest import REPO, assert_same_run, requests_of

SPILL = REPO / "configs" / "scenarios" / "global-spill.yaml"
PLACEMENTS = {
    "region": {},
    "host": {"placement": "host"},
    "rack": {"placement": "rack"},
    "shards2": {"shards": 2},
    "shards5": {"shards": 5},
}


def _events(region: str, at_s: int, back_s: int) -> str:
    return (
        f"events=[{{at_s: {at_s}, kind: fail, region: {region}, on_failure: retry}},"
        f"{{at_s: {back_s}, kind: repair, region: {region}}}]"
    )


def _without_region(trace: Path, every: int, out: Path) -> Path:
    """`trace` with every `every`-th row's region removed (null: no home region)."""
    t = read_trace(trace)
    drop = pa.array(np.arange(t.num_rows) % every == 0)
    region = pc.if_else(drop, pa.scalar(None, t.schema.field("region").type), t["region"])
    write_trace(t.set_column(t.schema.get_field_index("region"), "region", region), out, {})
    return out


def _simulate(runner, trace: Path, out: Path, sets: list[str]) -> Path:
    args = ["simulate", str(SPILL), "--trace", str(trace), "-o", str(out)]
    for s in sets:
        args += ["--set", s]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    return out


@settings(
    max_examples=4,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # each example replays twice
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    placement=st.sampled_from(sorted(PLACEMENTS)),
    region=st.sampled_from(["us-east", "eu-west"]),
    at_s=st.integers(5, 60),
    every=st.sampled_from([0, 3]),
)
def test_replay_equals_simulate_for_any_placement(
    runner, short_trace: Path, tmp_path_factory, placement: str, region: str, at_s: int, every: int
) -> None:
    tmp = tmp_path_factory.mktemp("spill")
    trace = _without_region(short_trace, every, tmp / "t.parquet") if every else short_trace
    sets = [_events(region, at_s, at_s + 30)]
    ref = _simulate(runner, trace, tmp / "simulate", sets)
    out = replay(
        SPILL,
        trace,
        tmp / "replay",
        ReplayOptions(address="inprocess", overrides=tuple(sets), **PLACEMENTS[placement]),
    )
    assert_same_run(out, ref)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spill"] == json.loads((ref / "summary.json").read_text())["spill"]
    # conservation: every trace row exactly once, none lost to the outage
    rows = requests_of(out)
    ids = read_trace(trace).column("request_id").to_pylist()
    assert sorted(rows["request_id"]) == sorted(ids)
    assert set(rows["status"]) == {"ok"}


def test_outage_spills_with_rtt_and_islands_lose_requests(runner, short_trace, tmp_path) -> None:
    """The issue's 2-region check on the demo trace, now with a third region to spill to."""
    sets = [_events("us-east", 30, 90)]
    spill = _simulate(runner, short_trace, tmp_path / "spill", sets)
    home = _simulate(runner, short_trace, tmp_path / "home", [*sets, "global_routing.policy=home"])
    s_spill = json.loads((spill / "summary.json").read_text())
    s_home = json.loads((home / "summary.json").read_text())
    assert s_spill["fleet"]["rejected"] == 0 < s_home["fleet"]["rejected"]
    flows = {(f["origin"], f["destination"]) for f in s_spill["spill"]}
    assert flows == {("us-east", "eu-west")}  # the nearest region (catalog RTT 80.54 ms)
    rows = requests_of(spill)
    rtt = np.array(rows["spill_rtt_ns"])
    moved = rtt > 0
    assert moved.sum() == sum(f["requests"] for f in s_spill["spill"])
    assert set(rtt[moved].tolist()) == {80_540_000}
    assert np.all(np.array(rows["latency_ns"])[moved] > rtt[moved])
    assert {rows["origin_region"][i] for i in np.flatnonzero(moved)} == {"us-east"}
    # analyze shows the same flows (summary.json's, the one summary path)
    r = runner.invoke(cli, ["analyze", str(spill), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{") :])["spill"] == s_spill["spill"]
    r = runner.invoke(cli, ["analyze", str(spill)])
    n = sum(f["requests"] for f in s_spill["spill"] if f["service"] == "rr-ranking")
    assert f"spill us-east -> eu-west rr-ranking: {n} requests" in r.output
    # per-request network time: here (no fabric) exactly the RTT; summary.json, analyze
    # --json and the console show its mean / p99 per group from the one summary path
    net = np.array(rows["network_ns"])
    np.testing.assert_array_equal(net, rtt)
    mine = (np.array(rows["region"]) == "eu-west") & (np.array(rows["service"]) == "rr-ranking")
    ok = mine & (np.array(rows["status"]) == "ok")
    group = next(
        g for g in s_spill["groups"] if (g["region"], g["service"]) == ("eu-west", "rr-ranking")
    )
    assert group["network_ns"]["mean"] == pytest.approx(net[ok].mean(), rel=1e-12)
    assert group["network_ns"]["p99"] == pytest.approx(np.quantile(net[ok], 0.99), rel=1e-12)
    assert group["network_ns"]["requests"] == int(np.count_nonzero(net[ok]))
    assert not any("network_ns" in g for g in s_home["groups"])  # islands: no network time
    doc = json.loads(runner.invoke(cli, ["analyze", str(spill), "--json"]).output)
    assert {"region": "eu-west", "service": "rr-ranking", "network_ns": group["network_ns"]} in (
        doc["network"]
    )
    mean_ms, p99_ms = group["network_ns"]["mean"] / 1e6, group["network_ns"]["p99"] / 1e6
    assert f"network eu-west rr-ranking: mean {mean_ms:.3f} ms, p99 {p99_ms:.3f} ms" in r.output


@pytest.mark.parametrize(
    "setting, message",
    [
        ("global_routing.rtt_ms={us-east: {mars: 5}}", "unknown region"),
        (
            "global_routing.rtt_ms={us-east: {eu-west: -1}}",
            "rtt_ms.us-east.eu-west: must be >= 0.0",
        ),
        ("global_routing.rtt_ms={us-east: {eu-west: 0}}", "must be > 0 ms"),
        (
            "global_routing.rtt_ms={us-east: {eu-west: 5}, eu-west: {us-east: 6}}",
            "rtt_ms.us-east.eu-west = 5.0 but rtt_ms.eu-west.us-east = 6.0",
        ),
        ("global_routing.policy=everywhere", "global_routing.policy"),
        ("global_routing.spill_outstanding_per_cell=0", "spill_outstanding_per_cell: must be > 0"),
    ],
)
def test_config_errors_exit_2_with_one_line(runner, tmp_path, setting, message) -> None:
    r = runner.invoke(
        cli,
        ["simulate", str(SPILL), "--trace", str(tmp_path / "never.parquet"), "--set", setting],
    )
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output


@pytest.mark.ray
def test_spill_shard_killed_mid_outage_recovers_identically(runner, short_trace, tmp_path) -> None:
    """On Ray, the one region-owning shard is killed during the outage and restarts from its
    checkpoint (the global router's record of moved requests included): same results."""
    pytest.importorskip("ray")
    import ray

    from mtia_cluster.distributed.ray_env import connect

    from .faults import KillingActors

    sets = (_events("us-east", 30, 90),)
    ref = _simulate(runner, short_trace, tmp_path / "simulate", list(sets))
    connect(None, namespace="mtia-cluster-test-globe", num_cpus=2)
    try:
        opt = ReplayOptions(epoch_ns=20 * 10**9, overrides=sets)
        faulty = KillingActors(0, 3)  # shard 0 dies before the 4th epoch (tests/distributed)
        out = replay(SPILL, short_trace, tmp_path / "run", opt, transport=faulty)
    finally:
        ray.shutdown()
    assert faulty.killed == ["shard-0000"]
    assert json.loads((out / "manifest.json").read_text())["shard_restarts"] == 1
    assert_same_run(out, ref)
