"""A candidate fleet's yearly cost, energy and carbon in one region, from the cost model.

Units needed: ``ceil(peak / estimated capacity per unit) + spare_units`` (the N-1 margin by
default). Over a year every unit exists (capex: purchase price amortized, docs/planning.md
"Cost") and draws power that follows its utilization at the mean of the day's demand (the
diurnal shape's mean is peak x (1 + 1/r) / 2 for a peak-to-trough ratio r; the power model
is linear in utilization, so the mean utilization gives the mean power). Utilization is the
mean demand over the fleet's estimated saturation rate (capacity / target utilization).
Power per accelerator and its host share come from `cost.power.pool_rates`, PUE, price and
carbon from the region's grid (`cost.data.region_grid`), exactly as a replay's cost columns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mtia_cluster import fmt
from mtia_cluster.cost.data import Grid
from mtia_cluster.cost.power import PoolRates
from mtia_cluster.planning.plan_candidates import Candidate
from mtia_cluster.planning.plan_file import Demand
from mtia_cluster.units import J_PER_KWH, S_PER_YEAR

MEMORY_BOUNDS = ("hbm", "lpddr")  # an LLM iteration's bound that draws memory-bound power


@dataclass(frozen=True)
class RegionCost:
    """One candidate's fleet in one region, per year."""

    units: int  # platform units, spare included
    accelerators: int
    peak_rps: float
    mean_rps: float
    mean_utilization: float
    capex_usd_per_year: float
    energy_usd_per_year: float
    cost_usd_per_year: float
    facility_energy_kwh_per_year: float
    co2e_t_per_year: float
    usd_per_m_queries: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def units_needed(peak_rps: float, rps_per_unit: float, spare: int) -> int:
    """Platform units that carry `peak_rps` at the estimated capacity, plus `spare`."""
    return max(1, math.ceil(peak_rps / rps_per_unit - 1e-9)) + spare


def region_cost(
    c: Candidate,
    rates: PoolRates,
    grid: Grid,
    demand: Demand,
    units: int,
    target_utilization: float,
) -> RegionCost:
    """The yearly cost, energy and carbon of `units` platform units of candidate `c`
    serving `demand` (module doc)."""
    accelerators = units * c.unit_accelerators
    r = demand.peak_to_trough
    mean_rps = demand.peak_rps * (1.0 + 1.0 / r) / 2.0
    saturation = units * c.rps_per_unit / target_utilization
    u = min(1.0, mean_rps / saturation)
    # an LLM candidate whose estimate is memory-bound draws memory-bound power (replays
    # charge each iteration by its bound); an R&R pool's busy power is already its bound's
    llm = "max_num_seqs" in c.settings
    power_w = rates.mean_power_w(u, memory_bound=llm and c.bound in MEMORY_BOUNDS)
    kwh = accelerators * power_w * grid.pue * S_PER_YEAR / J_PER_KWH
    capex = accelerators * rates.capex_usd_per_s * S_PER_YEAR
    energy_usd = kwh * grid.usd_per_kwh
    total = capex + energy_usd
    return RegionCost(
        units=units,
        accelerators=accelerators,
        peak_rps=demand.peak_rps,
        mean_rps=mean_rps,
        mean_utilization=u,
        capex_usd_per_year=capex,
        energy_usd_per_year=energy_usd,
        cost_usd_per_year=total,
        facility_energy_kwh_per_year=kwh,
        co2e_t_per_year=kwh * grid.gco2e_per_kwh / 1e6,
        usd_per_m_queries=total / (mean_rps * S_PER_YEAR / 1e6),
    )


def why(winner: dict[str, Any], other: dict[str, Any] | None) -> str:
    """One line: why `winner` beats `other`, the cheapest candidate of another chip (rows of
    `plan_search`): the gap in $/M queries, and whether hardware or energy made it."""
    if other is None:
        return "the only candidate that met the SLO"
    a, b = winner["cost"], other["cost"]
    pct = 100.0 * (1.0 - a["usd_per_m_queries"] / b["usd_per_m_queries"])
    capex_gain = b["capex_usd_per_year"] - a["capex_usd_per_year"]
    energy_gain = b["energy_usd_per_year"] - a["energy_usd_per_year"]
    if capex_gain >= energy_gain:
        reason = (
            f"less hardware for the load ({fmt.number(a['capex_usd_per_year'])} vs "
            f"{fmt.number(b['capex_usd_per_year'])} $/year capex): "
            + _hardware_reason(winner, other)
        )
    else:
        reason = "less energy at the wall " + (
            f"({fmt.number(a['facility_energy_kwh_per_year'])} vs "
            f"{fmt.number(b['facility_energy_kwh_per_year'])} kWh/year)"
        )
    failed = {None: " (estimate, not replayed)", False: " (which misses the SLO)"}.get(
        other.get("passed"), ""
    )
    return f"$/M queries {pct:.0f}% below {other['label']}{failed}, {reason}"


def _hardware_reason(winner: dict[str, Any], other: dict[str, Any]) -> str:
    """Higher capacity per $ of a unit, or (when not) finer units that waste less."""
    mine, theirs = (
        r["rps_per_unit"] / (r["cost"]["capex_usd_per_year"] / r["cost"]["units"]) * 1e3
        for r in (winner, other)
    )
    if mine >= theirs:
        return (
            f"higher capacity per $ ({fmt.number(mine)} vs {fmt.number(theirs)} req/s per $k/year)"
        )
    sizes = [r["cost"]["accelerators"] // r["cost"]["units"] for r in (winner, other)]
    return (
        f"finer units ({sizes[0]} vs {sizes[1]} accelerators) leave less idle and spare "
        f"capacity ({winner['cost']['units']} vs {other['cost']['units']} units)"
    )
