"""Health gates: an injected regression trips the gate and rolls back (or pauses); the same
plan without the regression completes. Run on the shipped example with cost-model capacity."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.config import apply_overrides, load_yaml
from mtia_cluster.rollout import run_rollout
from mtia_cluster.rollout.run import cohorts_for
from rollout.plans import EXAMPLES, make_plan

REGRESSION = EXAMPLES / "model-regression-rollback.yaml"


def _plan(*overrides: str):
    return make_plan(apply_overrides(load_yaml(REGRESSION), list(overrides)))


def test_regression_example_rolls_back() -> None:
    res, summary = run_rollout(_plan(), fast=True)
    assert [w.state for w in res.waves] == ["rolled_back", "cancelled"]
    assert summary["rollbacks"] == 1 and not summary["completed"]
    gate = res.gate_results[0]
    assert not gate["passed"] and not gate["checks"]["p99_vs_slo"][1]
    events = [e["event"] for e in res.events if e["region"] == ""]
    assert events == ["wave_start", "wave_swapped", "gate_fail", "rollback_start", "rollback_done"]
    tl = res.timeline
    last = [j for j, t in enumerate(tl["time_ns"]) if t == tl["time_ns"][-1]]
    # every canary rack is back on the old version; the other regions were never touched
    assert all(tl["racks_new_serving"][j] == 0 for j in last)
    assert sum(tl["racks_old_serving"][j] for j in last) == 12 + 40 + 40


def test_same_plan_without_regression_completes() -> None:
    res, summary = run_rollout(_plan("target.regression.latency_multiplier=1.0"), fast=True)
    assert [w.state for w in res.waves] == ["done", "done"]
    assert summary["completed"] and summary["rollbacks"] == 0
    assert summary["time_to_full_rollout_days"] > 0
    assert all(g["passed"] for g in res.gate_results)


def test_error_rate_regression_trips_gate_and_pauses() -> None:
    plan = _plan(
        "target.regression.latency_multiplier=1.0",
        "target.regression.error_rate=0.01",
        "rollout.on_gate_failure=pause",
    )
    res, summary = run_rollout(plan, fast=True)
    assert [w.state for w in res.waves] == ["paused", "cancelled"]
    assert summary["pauses"] == 1 and summary["rollbacks"] == 0
    assert not res.gate_results[0]["checks"]["error_rate"][1]
    # paused: the canary keeps the new version, nothing is rolled back
    assert res.timeline["racks_new_serving"][-3] == 12


def test_model_version_capacity_scales_with_perf_multiplier() -> None:
    c = cohorts_for(_plan(), load_catalog(), "fast")
    assert np.isclose(c["new"].rps, 1.05 * c["old"].rps)
    assert np.isclose(c["new"].p99_s, 2.5 * c["old"].p99_s)


def test_cli_writes_outputs(runner, tmp_path) -> None:
    out = tmp_path / "out"
    r = runner.invoke(cli, ["rollout", str(REGRESSION), "-o", str(out), "--fast", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["capacity_source"] == "fast"
    tl = pq.read_table(out / "timeline")
    ev = pq.read_table(out / "events")
    assert tl.num_rows == 3 * 21 * 24
    assert {"capacity_rps", "demand_rps", "headroom", "slo_ok", "rollout_state"} <= set(
        tl.column_names
    )
    kinds = set(ev.column("event").to_pylist())
    assert {"drain_start", "install_start", "serve", "gate_fail", "rollback_done"} <= kinds
    again = ["rollout", str(REGRESSION), "-o", str(out), "--fast"]
    refused = runner.invoke(cli, again)  # an earlier rollout: replaced only when asked
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    r2 = runner.invoke(cli, [*again, "--overwrite"])
    assert r2.exit_code == 0 and "rolled_back" in r2.output
