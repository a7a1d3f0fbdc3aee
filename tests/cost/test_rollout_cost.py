"""Cost and carbon over a rollout's timeline (#19): the regions add up to the total, the
total is capex + energy, and both follow from the timeline's racks and power."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from rollout.plans import make_plan
from rollout.test_conservation import NEW, OLD, random_plans

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cost import load_cost_data
from mtia_cluster.cost.rollout import rollout_costs
from mtia_cluster.rollout.region import STATES
from mtia_cluster.rollout.timeline import run_timeline
from mtia_cluster.units import J_PER_KWH, S_PER_YEAR

KEYS = ("facility_energy_mwh", "energy_cost_usd", "capex_usd", "cost_usd", "co2e_t")


def _rack_usd_per_s(chip: str, platform: str) -> float:
    cat, data = load_catalog(), load_cost_data()
    p, pc = cat.platform(platform), data.platforms[platform]
    usd = p.accelerators * data.chips[chip].price_usd
    usd += p.hosts * (pc.host_price_usd + pc.network_price_usd_per_host)
    return usd / (pc.amortization_years * S_PER_YEAR)


@settings(max_examples=40, deadline=None)
@given(random_plans())
def test_rollout_cost_adds_up_and_follows_the_timeline(data: dict) -> None:
    plan = make_plan(data)
    res = run_timeline(plan, {"old": OLD, "new": NEW})
    costs = rollout_costs(plan, res.timeline, load_catalog())
    rows = costs["cost_by_region"]
    for key in KEYS:
        assert math.isclose(sum(r[key] for r in rows), costs[key], rel_tol=1e-12), key
    assert math.isclose(costs["cost_usd"], costs["capex_usd"] + costs["energy_cost_usd"])
    tl = res.timeline
    step_s = plan.step_h * 3600.0
    grids = load_cost_data().grids
    rate = {"old": _rack_usd_per_s("mtia-2i", "mtia-2i-rack"),
            "new": _rack_usd_per_s("mtia-400", "mtia-400-rack")}  # fmt: skip
    for r in rows:
        m = np.asarray(tl["region"]) == r["region"]
        grid = grids["default"]  # the plans' regions r0..r3 have no entry of their own
        assert r["grid"] == "default"
        joules = float(np.asarray(tl["power_w"])[m].sum()) * step_s * grid.pue
        assert math.isclose(r["facility_energy_mwh"], joules / J_PER_KWH / 1e3, rel_tol=1e-9)
        assert math.isclose(
            r["co2e_t"], joules / J_PER_KWH * grid.gco2e_per_kwh / 1e6, rel_tol=1e-9
        )
        racks = {
            v: sum(float(np.asarray(tl[f"racks_{v}_{s}"])[m].sum()) for s in STATES)
            for v in ("old", "new")
        }
        capex = sum(racks[v] * rate[v] for v in rate) * step_s
        assert math.isclose(r["capex_usd"], capex, rel_tol=1e-9)
