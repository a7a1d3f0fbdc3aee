"""Racks and capacity are conserved through drains, swaps, rollbacks and failures."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.fleet.region import STATES, VERSIONS
from mtia_cluster.fleet.simulate import Cohort, Result, simulate
from rollout.plans import make_plan, plan_dict

OLD = Cohort("old-gen", 1.0e6, 20_000.0, 0.05, 0.0)
NEW = Cohort("new-gen", 2.5e6, 30_000.0, 0.05, 0.0)


@st.composite
def random_plans(draw: st.DrawFn) -> dict:
    n_regions = draw(st.integers(1, 4))
    regions = [
        {
            "name": f"r{i}",
            "racks": {"mtia-2i": draw(st.integers(2, 30))},
            "demand": {
                "peak_rps": draw(st.floats(1e5, 5e7)),
                "peak_to_trough": draw(st.floats(1.0, 4.0)),
                "tz_offset_h": draw(st.integers(-12, 14)),
                "weekly_growth_pct": draw(st.floats(0.0, 10.0)),
            },
        }
        for i in range(n_regions)
    ]
    names = [r["name"] for r in regions]
    cut = draw(st.integers(1, n_regions))
    waves = [names[:cut]] + ([names[cut:]] if cut < n_regions else [])
    data = plan_dict(
        **{
            "fleet.regions": regions,
            "waves": waves,
            "rollout.install_racks_per_day": draw(st.floats(0.5, 48.0)),
            "rollout.swap_time_h": {
                "drain": draw(st.floats(0.0, 6.0)),
                "install": draw(st.floats(0.0, 48.0)),
                "burnin": draw(st.floats(0.0, 24.0)),
            },
            "rollout.drain_budget": draw(st.floats(0.5, 1.0)),
            "rollout.bake_days": draw(st.floats(0.0, 2.0)),
            "timeline.step_h": draw(st.sampled_from([0.5, 1.0, 3.0])),
            "timeline.horizon_days": draw(st.floats(1.0, 12.0)),
        }
    )
    if draw(st.booleans()):
        data["failures"] = {
            "mtbf_h": draw(st.floats(50.0, 5000.0)),
            "mttr_h": draw(st.floats(1.0, 72.0)),
            "seed": draw(st.integers(0, 2**31)),
            "correlated_prob_per_day": draw(st.floats(0.0, 0.5)),
            "correlated_racks": draw(st.integers(0, 5)),
        }
    return data


def _column(res: Result, name: str) -> np.ndarray:
    return np.asarray(res.timeline[name])


def check_invariants(data: dict, res: Result) -> None:
    racks = {r["name"]: r["racks"]["mtia-2i"] for r in data["fleet"]["regions"]}
    region = _column(res, "region")
    counts = {(v, s): _column(res, f"racks_{v}_{s}") for v in VERSIONS for s in STATES}
    total = np.sum(list(counts.values()), axis=0)
    expected = np.array([racks[r] for r in region])
    assert (total == expected).all()
    assert (_column(res, "racks_total") == expected).all()
    assert all((c >= 0).all() for c in counts.values())
    cap = counts[("old", "serving")] * OLD.rps + counts[("new", "serving")] * NEW.rps
    np.testing.assert_allclose(_column(res, "capacity_rps"), cap, rtol=1e-12)
    swapping = sum(counts[(v, s)] for v in VERSIONS for s in ("draining", "installing", "burnin"))
    budget = np.floor(data["rollout"]["drain_budget"] * expected + 1e-9)
    assert (swapping <= budget).all()
    assert (_column(res, "slo_ok") == (_column(res, "demand_rps") <= cap)).all()


@settings(max_examples=40, deadline=None)
@given(random_plans())
def test_racks_and_capacity_conserved_every_step(data: dict) -> None:
    res = simulate(make_plan(data), {"old": OLD, "new": NEW})
    check_invariants(data, res)


@settings(max_examples=20, deadline=None)
@given(random_plans())
def test_rollback_conserves_racks(data: dict) -> None:
    """A regressed new version trips the gate; the rollback returns racks to old, none lost."""
    bad = Cohort("new-bad", NEW.rps, NEW.power_w, 0.5, 0.0)  # p99 5x the SLO of 100 ms
    data["rollout"]["bake_days"] = 0.5
    res = simulate(make_plan(data), {"old": OLD, "new": bad})
    check_invariants(data, res)
    states = {w.state for w in res.waves}
    assert "done" not in states


def test_full_swap_ends_with_every_rack_new() -> None:
    data = plan_dict()
    res = simulate(make_plan(data), {"old": OLD, "new": NEW})
    check_invariants(data, res)
    assert [w.state for w in res.waves] == ["done", "done"]
    last = _column(res, "time_ns") == max(res.timeline["time_ns"])
    assert (_column(res, "racks_new_serving")[last] == [10, 20]).all()
    assert (_column(res, "racks_old_serving")[last] == 0).all()
    assert math.isclose(float(_column(res, "capacity_rps")[last].sum()), 30 * NEW.rps)
