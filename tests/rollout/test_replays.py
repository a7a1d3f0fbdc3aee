"""Exact replays at the moments that matter: gates judged on replayed metrics, slices that
keep the region's utilization, no lost requests, disagreements with the timeline reported."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.config import load_yaml
from mtia_cluster.rollout import run_rollout
from mtia_cluster.rollout.moment_replay import Moment, offered_rps, slice_hosts
from mtia_cluster.rollout.slice import EngineCohort, replay_span_s
from rollout.plans import EXAMPLES, make_plan, plan_dict

REGRESSION = EXAMPLES / "model-regression-rollback.yaml"


def _version_plan(**changes: Any) -> Any:
    """One small model-version region (3 MTIA 2i racks, ~10% load), cheap to replay."""
    d = plan_dict(
        **{
            "fleet.regions": [
                {"name": "a", "racks": {"mtia-2i": 3}, "demand": {"peak_rps": 6.0e5}},
                {"name": "b", "racks": {"mtia-2i": 3}, "demand": {"peak_rps": 6.0e5}},
            ],
            "target": {"kind": "model_version", "from_generation": "mtia-2i"},
            "rollout.drain_budget": 0.34,
            "rollout.install_racks_per_day": 24,
            "timeline.horizon_days": 6,
            "replay": {"span_s": 0.5, "max_requests": 60000},
        }
    )
    for path, value in changes.items():
        node = d
        *head, last = path.split(".")
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return make_plan(d)


def test_regression_example_trips_gate_on_replayed_metrics() -> None:
    plan = make_plan(load_yaml(REGRESSION))
    res, summary = run_rollout(plan)
    assert summary["gate_metrics"] == "replay"
    assert [w.state for w in res.waves] == ["rolled_back", "cancelled"]
    gate = res.gate_results[0]
    assert gate["metrics"] == "replay" and not gate["passed"]
    (row,) = [r for r in res.replays if r["kind"] == "gate"]
    # the gate's p99 is the replayed new cohort's, and it breaks the SLO
    assert math.isclose(gate["checks"]["p99_vs_slo"][0], row["new_p99_s"] / plan.slo_p99_s)
    assert row["new_p99_s"] > plan.slo_p99_s and row["new_requests"] > 0
    # the timeline thought the canary had room: the replay disagrees and says so
    assert row["timeline_slo_ok"] and not row["agrees"]
    assert summary["replay_disagreements"] >= 1
    kinds = {r["kind"] for r in summary["replays"]}
    assert kinds == {"gate", "wave_peak", "worst_headroom"}


def test_healthy_version_passes_on_replay_and_agrees() -> None:
    res, summary = run_rollout(_version_plan(**{"target.perf_multiplier": 1.1}))
    assert summary["replay_disagreements"] == 0
    assert [w.state for w in res.waves] == ["done", "done"]
    assert all(g["metrics"] == "replay" and g["passed"] for g in res.gate_results)
    for r in res.replays:
        assert r["replay_slo_ok"] and r["agrees"] and r["verdict"] == "ok"
        assert r["requests"] == r["old_requests"] + r["new_requests"]  # none lost
        assert r["error_rate"] == 0.0
        # at ~10% load the slice keeps up: served rate close to the demand
        assert abs(r["replayed_throughput_rps"] / r["demand_rps"] - 1) < 0.1


def test_injected_errors_trip_gate_on_replay_and_pause() -> None:
    plan = _version_plan(
        **{"target.regression": {"error_rate": 0.02}, "rollout.on_gate_failure": "pause"}
    )
    res, summary = run_rollout(plan)
    assert [w.state for w in res.waves] == ["paused", "cancelled"] and summary["pauses"] == 1
    gate = res.gate_results[0]
    (row,) = [r for r in res.replays if r["kind"] == "gate"]
    assert gate["checks"]["error_rate"][0] == row["new_error_rate"]
    n = row["new_requests"]
    assert abs(row["new_error_rate"] - 0.02) < 5 * math.sqrt(0.02 * 0.98 / n)
    assert not gate["checks"]["error_rate"][1] and gate["checks"]["p99_vs_slo"][1]


def test_latency_regression_in_engine_terms_can_pass_at_low_load() -> None:
    """x2.5 service time at ~10% load stays within the SLO on replay, while the timeline's
    analytic p99 (baseline x 2.5 = 125 ms) would fail: the gates follow the replay."""
    plan = _version_plan(**{"target.regression": {"latency_multiplier": 2.5}})
    res, _ = run_rollout(plan)
    assert res.gate_results[0]["passed"] and res.gate_results[0]["metrics"] == "replay"
    res_t, summary_t = run_rollout(plan, replay=False)
    assert summary_t["gate_metrics"] == "timeline" and not res_t.gate_results[0]["passed"]


def test_replays_are_deterministic() -> None:
    plan = _version_plan(**{"target.regression": {"error_rate": 0.01}})
    a = run_rollout(plan)[0].replays
    b = run_rollout(plan)[0].replays
    assert json.dumps(a, default=str) == json.dumps(b, default=str)


def _ec(label: str, hosts_per_rack: int, rack_rps: float) -> EngineCohort:
    return EngineCohort(label, "p", hosts_per_rack, rack_rps, 1.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    old=st.integers(0, 60),
    new=st.integers(0, 60),
    hpr=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    rps=st.tuples(st.floats(1e3, 1e7), st.floats(1e3, 1e7)),
    util=st.floats(0.01, 2.0),
    max_hosts=st.integers(1, 8),
    max_requests=st.integers(1000, 10**6),
)
def test_slice_keeps_versions_and_utilization(
    old: int, new: int, hpr: Any, rps: Any, util: float, max_hosts: int, max_requests: int
) -> None:
    if old + new == 0:
        return
    plan = _version_plan(replay={"max_hosts": max_hosts, "max_requests": max_requests})
    ecs = {"old": _ec("o", hpr[0], rps[0]), "new": _ec("n", hpr[1], rps[1])}
    cap = old * rps[0] + new * rps[1]
    m = Moment("t", 0, 0, "a", 0, {"old": old, "new": new}, util * cap, cap, util <= 1)
    k = slice_hosts(plan, m, ecs)
    for v, racks in m.serving.items():
        region_hosts = racks * ecs[v].hosts_per_rack
        assert (k.get(v, 0) >= 1) == (racks > 0)  # every serving version, no other
        assert k.get(v, 0) <= region_hosts
    # at most max_hosts (+1 when rounding both versions up to one host each), and within
    # the request budget unless already down to one host per version
    assert sum(k.values()) <= max(max_hosts + 1, len(k))
    assert sum(k.values()) == len(k) or offered_rps(m, ecs, k) * replay_span_s(plan) <= max_requests
    fits = m.demand_rps * replay_span_s(plan) <= max_requests
    if old * hpr[0] + new * hpr[1] <= max_hosts and fits:
        assert k == {v: r * ecs[v].hosts_per_rack for v, r in m.serving.items() if r}
        assert math.isclose(offered_rps(m, ecs, k), m.demand_rps)
    # offered / slice capacity == demand / region capacity: the region's utilization
    slice_cap = sum(k[v] * ecs[v].rack_rps / ecs[v].hosts_per_rack for v in k)
    assert math.isclose(offered_rps(m, ecs, k) / slice_cap, util, rel_tol=1e-9)


def test_cli_replays_output_and_fast_fallback(runner, tmp_path) -> None:
    plan = tmp_path / "plan.yaml"
    d = plan_dict()
    d.update(
        {
            "fleet": {
                "regions": [{"name": "a", "racks": {"mtia-2i": 3}, "demand": {"peak_rps": 6e5}}]
            },
            "target": {"kind": "model_version", "from_generation": "mtia-2i"},
            "waves": [["a"]],
            "replay": {"span_s": 0.5, "max_requests": 60000},
        }
    )
    d["rollout"]["drain_budget"] = 0.34
    d["timeline"]["horizon_days"] = 4
    plan.write_text(yaml.safe_dump(d))
    out = tmp_path / "out"
    r = runner.invoke(cli, ["rollout", str(plan), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    table = pq.read_table(out / "replays")
    assert table.num_rows == len(summary["replays"]) >= 2
    assert set(table.column("kind").to_pylist()) >= {"gate", "wave_peak"}
    assert np.all(np.asarray(table.column("agrees").to_pylist()))
    r = runner.invoke(cli, ["rollout", str(plan), "-o", str(out), "--overwrite"])
    assert r.exit_code == 0 and "exact replays" in r.output and "gates on replay" in r.output
    for flag in ("--fast", "--no-replay"):
        r = runner.invoke(
            cli, ["rollout", str(plan), "-o", str(out), flag, "--json", "--overwrite"]
        )
        assert r.exit_code == 0, r.output
        s = json.loads(r.output)
        assert s["gate_metrics"] == "timeline" and s["replays"] == []
        assert pq.read_table(out / "replays").num_rows == 0


def test_engine_cohorts_of_generation_swap() -> None:
    """Engine cohorts of a generation swap: each version on its own chip's platform."""
    from mtia_cluster.rollout.run import cohorts_for
    from mtia_cluster.rollout.slice import engine_cohorts

    plan = make_plan(plan_dict())
    cat = load_catalog()
    ecs = engine_cohorts(plan, cat, cohorts_for(plan, cat, "fast"))
    assert ecs["old"].platform.startswith("mtia-2i") and ecs["new"].platform.startswith("mtia-400")
    assert ecs["new"].service_time_multiplier == 1.0 and ecs["new"].error_rate == 0.0


@settings(max_examples=100, deadline=None)
@given(
    a=st.lists(st.floats(0, 10), min_size=1, max_size=50),
    b=st.lists(st.floats(0, 10), min_size=1, max_size=50),
)
def test_weighted_p99_follows_the_weights(a: list[float], b: list[float]) -> None:
    from mtia_cluster.rollout.slice import p99

    x = np.array(a + b)
    ones = np.ones(len(x))
    assert p99(x, ones) == p99(x) == float(np.percentile(x, 99))
    # (almost) all weight on group a: its nearest-rank p99
    w = np.array([1.0] * len(a) + [1e-12] * len(b))
    sa = np.sort(np.array(a))
    assert p99(x, w) == sa[min(int(np.ceil(0.99 * len(a))) - 1, len(a) - 1)]
    assert min(x) <= p99(x, np.array([1.0] * len(a) + [3.0] * len(b))) <= max(x)


def test_llm_model_version_with_slowdown_is_refused_for_replay(runner, tmp_path) -> None:
    d = plan_dict(
        **{
            "service.model": "llama-3.1-70b",
            "service.slo_p99_ms": 20000,
            "fleet.regions": [{"name": "a", "racks": {"mtia-400": 3}, "demand": {"peak_rps": 50}}],
            "target": {"kind": "model_version", "from_generation": "mtia-400",
                       "perf_multiplier": 1.2},
            "waves": [["a"]],
            "rollout.drain_budget": 0.34,
            "timeline.horizon_days": 2,
        }
    )  # fmt: skip
    plan = tmp_path / "llm.yaml"
    plan.write_text(yaml.safe_dump(d))
    r = runner.invoke(cli, ["rollout", str(plan), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "cannot be replayed" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(cli, ["rollout", str(plan), "-o", str(tmp_path / "o"), "--no-replay"])
    assert r.exit_code == 0, r.output
