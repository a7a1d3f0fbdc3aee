"""`--optimize` never returns a plan that violates its own constraint, and returns the fastest
feasible candidate it evaluated."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.rollout.optimize import optimize
from mtia_cluster.rollout.timeline import run_timeline
from rollout.plans import EXAMPLES, make_plan, plan_dict
from rollout.test_conservation import NEW, OLD, random_plans


def _holds(plan, waves, rate, margin: float) -> bool:
    """The constraint, recomputed from the timeline independently of optimize.check."""
    variant = dataclasses.replace(plan, waves=waves, install_racks_per_day=rate)
    res = run_timeline(variant, {"old": OLD, "new": NEW})
    tl = res.timeline
    up = np.asarray(tl["region_up"], dtype=bool)  # whole-region outages: the regions that are
    cap = np.asarray(tl["capacity_rps"])[up]  # up must hold the demand offered to them
    dem = np.asarray(tl["offered_rps"])[up]  # (own + failover) and no demand may be lost
    lost = np.asarray(tl["lost_rps"])
    held = bool((cap >= dem * (1 + margin)).all()) and not (lost > 0).any()
    return all(w.state == "done" for w in res.waves) and held


@st.composite
def optimizable_plans(draw: st.DrawFn) -> dict:
    """Plans whose week-0 demand is 30-95% of their capacity, so many have feasible variants."""
    regions = []
    for i in range(draw(st.integers(2, 4))):
        racks = draw(st.integers(4, 20))
        demand = {
            "peak_rps": racks * OLD.rps * draw(st.floats(0.3, 0.95)),
            "peak_to_trough": draw(st.floats(1.0, 3.0)),
            "tz_offset_h": draw(st.integers(-12, 14)),
            "weekly_growth_pct": draw(st.floats(0.0, 8.0)),
        }
        regions.append({"name": f"r{i}", "racks": {"mtia-2i": racks}, "demand": demand})
    changes = {
        "fleet.regions": regions,
        "waves": [[r["name"]] for r in regions],
        "rollout.install_racks_per_day": draw(st.floats(0.5, 4.0)),
        "rollout.swap_time_h": {"drain": 1, "install": draw(st.floats(1, 24)), "burnin": 2},
        "rollout.drain_budget": draw(st.floats(0.25, 0.6)),
        "rollout.bake_days": draw(st.floats(0, 2)),
        "timeline.step_h": 2,
        "timeline.horizon_days": 30,
        "optimize": {
            "headroom_margin": draw(st.floats(0.0, 0.3)),
            "install_racks_per_day": draw(st.lists(st.floats(0.5, 12), min_size=1, max_size=2)),
            "wave_sizes": [1, 2, 4],
        },
    }
    return plan_dict(**changes)


@settings(max_examples=25, deadline=None)
@given(st.one_of(optimizable_plans(), random_plans()))
def test_best_plan_meets_its_constraint(data: dict) -> None:
    data.setdefault("optimize", {"headroom_margin": 0.1, "wave_sizes": [1, 2]})
    plan = make_plan(data)
    margin = data["optimize"]["headroom_margin"]
    given_c, best, tried = optimize(plan, {"old": OLD, "new": NEW})
    assert tried[0] == given_c and given_c.waves == plan.waves
    feasible = [c for c in tried if c.feasible]
    if best is None:
        assert not feasible
        return
    assert best.feasible and _holds(plan, best.waves, best.install_racks_per_day, margin)
    assert best.done_days is not None
    assert all(best.done_days <= c.done_days for c in feasible if c.done_days is not None)
    # every region appears in exactly one wave of the returned plan
    names = [n for w in best.waves for n in w]
    assert sorted(names) == sorted(n for w in plan.waves for n in w)


def test_finds_feasible_plan_when_given_one_is_not() -> None:
    """Growing demand outruns a slow rollout; a faster install rate keeps the margin."""
    regions = [
        {"name": f"r{i}", "racks": {"mtia-2i": 10},
         "demand": {"peak_rps": 6.0e6, "weekly_growth_pct": 10.0}}
        for i in range(3)
    ]  # fmt: skip
    data = plan_dict(
        **{
            "fleet.regions": regions,
            "waves": [["r0"], ["r1"], ["r2"]],
            "rollout.install_racks_per_day": 0.5,
            "rollout.drain_budget": 0.1,
            "timeline.horizon_days": 40,
            "optimize": {"headroom_margin": 0.05, "install_racks_per_day": [0.5, 6]},
        }
    )
    given_c, best, _ = optimize(make_plan(data), {"old": OLD, "new": NEW})
    assert not given_c.feasible
    assert best is not None and best.install_racks_per_day == 6
    assert _holds(make_plan(data), best.waves, 6, 0.05)


def test_cli_optimize_reports_given_and_best(runner, tmp_path) -> None:
    plan = EXAMPLES / "mtia400-to-450-swap.yaml"
    out = tmp_path / "o"
    args = ["rollout", str(plan), "-o", str(out), "--fast", "--optimize", "--json"]
    args += ["--set", "optimize.install_racks_per_day=[4, 8]"]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    opt = json.loads(r.output)["optimize"]
    assert opt["given"]["install_racks_per_day"] == 4
    best = opt["best"]
    assert best is not None and best["feasible"]
    assert best["done_days"] <= opt["given"]["done_days"]
    assert best["min_headroom"] >= opt["headroom_margin"]


def test_outage_with_lost_demand_is_never_feasible() -> None:
    """failover none: a region outage loses demand, so no candidate is feasible; with
    proportional failover and ample headroom the same plan has a feasible best."""
    outage = [{"region": "a", "at_day": 1, "duration_h": 6}]
    regions = [{"name": n, "racks": {"mtia-2i": 10}, "demand": {"peak_rps": 3.0e6}} for n in "ab"]
    base = plan_dict(**{"fleet.regions": regions}, outages=outage)
    _, best, _ = optimize(make_plan({**base, "failover": "none"}), {"old": OLD, "new": NEW})
    assert best is None
    _, best, _ = optimize(make_plan(base), {"old": OLD, "new": NEW})
    assert best is not None and best.feasible
    assert _holds(make_plan(base), best.waves, best.install_racks_per_day, 0.0)
