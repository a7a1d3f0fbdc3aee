"""Bad rollout plans: one line naming file/field/value, exit status 2, no output written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mtia_cluster.cli.main import cli
from rollout.plans import plan_dict

LLM: dict[str, Any] = {  # the LLM swap plan's service and racks (SLO 20 s)
    "service.model": "llama-3.1-70b",
    "service.slo_p99_ms": 20000,
    "service.baseline_p99_ms": 12000,
    "fleet.regions": [
        {"name": "a", "racks": {"mtia-400": 4}, "demand": {"peak_rps": 1}},
        {"name": "b", "racks": {"mtia-400": 4}, "demand": {"peak_rps": 1}},
    ],
    "target.from_generation": "mtia-400",
    "target.generation": "mtia-450",
}

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-region": ({"waves": [["a"], ["zz"]]}, "unknown region"),
    "unknown-generation": (
        {"fleet.regions": [{"name": "a", "racks": {"mtia-9": 4}, "demand": {"peak_rps": 1}}]},
        "unknown generation",
    ),
    "other-generation": (
        {
            "fleet.regions": [{"name": "a", "racks": {"h100": 4}, "demand": {"peak_rps": 1}}],
            "waves": [["a"]],
        },
        "neither swaps from nor to",
    ),
    "unknown-target": ({"target.generation": "tpu-v9"}, "unknown generation"),
    "overlapping-waves": ({"waves": [["a", "b"], ["b"]]}, "overlapping waves"),
    "zero-drain-budget": ({"rollout.drain_budget": 0}, "drain_budget"),
    "too-long": ({"timeline.horizon_days": 2000, "timeline.max_steps": 1000}, "coarser step_h"),
    "bad-type": ({"rollout.install_racks_per_day": "fast"}, "expected a number"),
    "bad-action": ({"rollout.on_gate_failure": "panic"}, "on_gate_failure"),
    "no-waves": ({"waves": []}, "waves"),
    "event-region": (
        {"events": [{"at_day": 1, "region": "zz", "kind": "add", "racks": {"mtia-2i": 1}}]},
        "unknown region",
    ),
    "event-generation": (
        {"events": [{"at_day": 1, "region": "a", "kind": "add", "racks": {"h100": 1}}]},
        "not a generation of this rollout",
    ),
    "event-after-horizon": (
        {"events": [{"at_day": 20, "region": "a", "kind": "add", "racks": {"mtia-2i": 1}}]},
        "horizon",
    ),
    "event-kind": (
        {"events": [{"at_day": 1, "region": "a", "kind": "grow", "racks": {"mtia-2i": 1}}]},
        "kind",
    ),
    "event-count": (
        {"events": [{"at_day": 1, "region": "a", "kind": "add", "racks": {"mtia-2i": 0}}]},
        "must be > 0",
    ),
    "replay-budget": ({"replay": {"max_requests": 0}}, "max_requests"),
    "failure-part": (
        {"failures": {"parts": [{"part": "psu", "mtbf_h": 10, "mttr_h": 1}]}},
        "must be one of accelerator, host",
    ),
    "failures-without-model": ({"failures": {"seed": 1}}, "mtbf_h"),
    "outage-region": (
        {"outages": [{"region": "zz", "at_day": 1, "duration_h": 4}]},
        "unknown region",
    ),
    "outage-negative-duration": (
        {"outages": [{"region": "a", "at_day": 1, "duration_h": -4}]},
        "duration_h",
    ),
    "outage-zero-duration": ({"outages": [{"region": "a", "at_day": 1, "duration_h": 0}]}, "> 0"),
    "outage-after-horizon": (
        {"outages": [{"region": "a", "at_day": 25, "duration_h": 4}]},
        "horizon",
    ),
    "outage-negative-day": (
        {"outages": [{"region": "a", "at_day": -1, "duration_h": 4}]},
        "at_day",
    ),
    "failover-mode": ({"failover": "random"}, "failover"),
    "region-failures-mttr": ({"failures": {"region": {"mtbf_h": 100}}}, "mttr_h"),
    "ttft-on-rr": ({"service.ttft_p99_ms": 500}, "LLM services only"),
    "search-on-rr": ({"service.capacity_search": {"rel_tol": 0.1}}, "LLM services only"),
    "llm-ttft-negative": ({**LLM, "service.ttft_p99_ms": -5}, "must be > 0"),
    "llm-tpot-type": ({**LLM, "service.tpot_p99_ms": "fast"}, "expected a number"),
    "llm-window-short": ({**LLM, "service.capacity_search": {"window_s": 60}}, ">= 5 x"),
    "llm-rel-tol": ({**LLM, "service.capacity_search": {"rel_tol": 0.9}}, "must be <= 0.5"),
    "llm-search-field": ({**LLM, "service.capacity_search": {"bins": 3}}, "unknown key"),
    "llm-hosts": ({**LLM, "service.capacity_search": {"hosts": 0}}, "must be > 0"),
    "growth-overflow": (
        {
            "fleet.regions": [
                {
                    "name": "a",
                    "racks": {"mtia-400": 4},
                    "demand": {"peak_rps": 1, "weekly_growth_pct": 1e300},
                }
            ]
        },
        "must be <= 100",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_plan_exits_2(name: str, runner, tmp_path: Path) -> None:
    changes, needle = CASES[name]
    plan = tmp_path / f"{name}.yaml"
    plan.write_text(yaml.safe_dump(plan_dict(**changes)))
    out = tmp_path / "out"
    r = runner.invoke(cli, ["rollout", str(plan), "-o", str(out), "--fast"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(plan) in lines[0]
    assert needle in lines[0]
    assert not out.exists()


def test_missing_plan_file(runner, tmp_path: Path) -> None:
    r = runner.invoke(cli, ["rollout", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "file not found" in r.output


def test_coarser_step_accepts_long_timeline(runner, tmp_path: Path) -> None:
    changes = {"timeline.horizon_days": 2000, "timeline.max_steps": 1000, "timeline.step_h": 48}
    plan = tmp_path / "ok.yaml"
    plan.write_text(yaml.safe_dump(plan_dict(**changes)))
    r = runner.invoke(cli, ["rollout", str(plan), "-o", str(tmp_path / "o"), "--fast"])
    assert r.exit_code == 0, r.output
