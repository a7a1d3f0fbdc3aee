"""Cost and carbon of a rollout's timeline (issue #19; docs/planning.md, "Rollouts").

The rollout timeline (rollout/timeline.py) holds per region and step the racks of each
version by state and the power of the serving ones (accelerators and hosts at their
load). Energy is that power x the step, x the region's PUE (configs/catalog/cost/
regions.yaml by the region's name); its price and carbon use the region's figures. Capex
is every rack on the floor (serving, draining, installing, burn-in, failed) at its
platform's purchase price (chip, hosts, network share; the platform `capacity` uses for the
chip) amortized over the platform's amortization period, for the step's duration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.cost.data import CostData, load_cost_data
from mtia_cluster.units import J_PER_KWH, MEGA, NS_PER_H, NS_PER_S, S_PER_YEAR


def rack_capex_usd_per_s(cat: Any, data: CostData, chip: str, units: int) -> float:
    """A rack of `units` platform units of `chip`: its purchase price per second of its
    amortization period."""
    from mtia_cluster.planning.capacity import platform_for

    name = platform_for(cat, chip)
    p, pc = cat.platform(name), data.platform(name)
    unit_usd = p.accelerators * data.chip(chip).price_usd
    unit_usd += p.hosts * (pc.host_price_usd + pc.network_price_usd_per_host)
    return unit_usd * units / (pc.amortization_years * S_PER_YEAR)


def rollout_costs(plan: Any, timeline: dict[str, list[Any]], cat: Any) -> dict[str, Any]:
    """Energy at the wall, its price and carbon, and amortized capex over the timeline, in
    total and per region (summary.json fields, docs/rollout.md)."""
    from mtia_cluster.rollout.region import STATES, VERSIONS

    data = load_cost_data()
    step_s = plan.step_h * NS_PER_H / NS_PER_S
    chips = {"old": plan.target.from_generation, "new": plan.target.to_generation}
    rate = {
        v: rack_capex_usd_per_s(cat, data, c, plan.units_per_rack.get(c, 1))
        for v, c in chips.items()
    }
    region = np.asarray(timeline["region"])
    power = np.asarray(timeline["power_w"], dtype=np.float64)
    racks = {
        v: np.sum([np.asarray(timeline[f"racks_{v}_{s}"], np.float64) for s in STATES], axis=0)
        for v in VERSIONS
    }
    rows = []
    for r in plan.regions:
        m = region == r.name
        grid = data.grids[data.grid_entry(r.name)]
        kwh = float(power[m].sum()) * step_s * grid.pue / J_PER_KWH
        capex = sum(float(racks[v][m].sum()) * rate[v] for v in VERSIONS) * step_s
        energy_usd = kwh * grid.usd_per_kwh
        rows.append(
            {
                "region": r.name,
                "grid": grid.entry,
                "facility_energy_mwh": kwh / 1e3,
                "energy_cost_usd": energy_usd,
                "capex_usd": capex,
                "cost_usd": energy_usd + capex,
                "co2e_t": kwh * grid.gco2e_per_kwh / MEGA,
            }
        )
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k not in ("region", "grid")}
    return {**total, "cost_by_region": rows}
