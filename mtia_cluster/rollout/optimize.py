"""`rollout --optimize`: the fastest plan that never drops a region below demand x (1 + margin).

A small exhaustive search, each candidate simulated with the same per-rack capacities:
- wave orders: the plan's own region order, and regions by tightness (least capacity per unit
  of demand grown over the horizon first, so the regions that would run out first are upgraded
  first);
- wave sizes: a one-region first wave (the canary) and then waves of k regions, for each k in
  `optimize.wave_sizes`; plus the plan's own waves;
- install rates: `optimize.install_racks_per_day` (default: the plan's rate).
A candidate is feasible when every wave passes its gate and, at every step in every region,
capacity >= demand x (1 + headroom_margin); with whole-region outages, demand is the
demand offered after failover, regions that are down are skipped, and no demand may be lost.
The best is the feasible one done earliest (ties:
more headroom, then fewer waves); None when no candidate is feasible. Failures are drawn as in
the plan (same seed), so the verdict holds for that draw only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.rollout.plan import Plan, Region
from mtia_cluster.rollout.timeline import Cohort, TimelineResult, run_timeline
from mtia_cluster.units import NS_PER_DAY

Waves = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Candidate:
    waves: Waves
    install_racks_per_day: float
    feasible: bool
    done_days: float | None  # last gate passed (None: not every wave done)
    min_margin: float  # min over steps and regions of capacity / demand - 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "waves": [list(w) for w in self.waves],
            "install_racks_per_day": self.install_racks_per_day,
            "feasible": self.feasible,
            "done_days": self.done_days,
            "min_headroom": self.min_margin,
        }


def check(plan: Plan, res: TimelineResult, margin: float) -> tuple[bool, float | None, float]:
    """(feasible, done_days, min headroom) of a simulated plan under `margin`."""
    up = np.asarray(res.timeline["region_up"], dtype=bool)  # down regions: judged by lost_rps
    cap = np.asarray(res.timeline["capacity_rps"], dtype=np.float64)[up]
    dem = np.asarray(res.timeline["offered_rps"], dtype=np.float64)[up]
    lost = np.asarray(res.timeline["lost_rps"], dtype=np.float64)
    min_margin = float((cap / dem - 1.0).min()) if len(cap) else -1.0
    done = all(w.state == "done" for w in res.waves)
    done_days = res.waves[-1].end_ns / NS_PER_DAY if done else None
    ok = done and bool((cap >= dem * (1.0 + margin)).all()) and not (lost > 0).any()
    return ok, done_days, min_margin


def evaluate(plan: Plan, cohorts: dict[str, Cohort], waves: Waves, rate: float) -> Candidate:
    """Simulate `plan` with `waves` and `rate` and judge it against its own margin."""
    margin = plan.optimize.headroom_margin if plan.optimize else 0.0
    variant = dataclasses.replace(plan, waves=waves, install_racks_per_day=rate)
    ok, done_days, min_margin = check(variant, run_timeline(variant, cohorts), margin)
    return Candidate(waves, rate, ok, done_days, min_margin)


def wave_options(plan: Plan, cohorts: dict[str, Cohort]) -> list[Waves]:
    """Candidate wave lists (see module doc), without duplicates, the plan's own first."""
    by_name = {r.name: r for r in plan.regions}
    given = [n for w in plan.waves for n in w]
    old_rps = cohorts["old"].rps

    def slack(name: str) -> float:
        return _slack(by_name[name], plan, old_rps)

    orders = [given, sorted(given, key=lambda n: (slack(n), given.index(n)))]
    sizes = plan.optimize.wave_sizes if plan.optimize else (1,)
    out: list[Waves] = [plan.waves]
    for order in orders:
        for k in sizes:
            rest = [tuple(order[i : i + k]) for i in range(1, len(order), k)]
            waves = (tuple(order[:1]), *rest)
            if waves not in out:
                out.append(waves)
    return out


def _slack(region: Region, plan: Plan, old_rps: float) -> float:
    """Old-generation capacity / peak demand grown over the horizon (small: runs out first)."""
    d = region.demand
    grown = d.peak_rps * (1.0 + d.weekly_growth_pct / 100.0) ** (plan.horizon_days / 7.0)
    racks = region.racks.get(plan.target.from_generation, 0)
    return racks * old_rps / grown


def optimize(
    plan: Plan, cohorts: dict[str, Cohort]
) -> tuple[Candidate, Candidate | None, list[Candidate]]:
    """(the plan as given, the best feasible candidate or None, every candidate evaluated)."""
    rates = plan.optimize.install_rates if plan.optimize else (plan.install_racks_per_day,)
    given = evaluate(plan, cohorts, plan.waves, plan.install_racks_per_day)
    tried = [given]
    for rate in rates:
        for waves in wave_options(plan, cohorts):
            if (waves, rate) != (plan.waves, plan.install_racks_per_day):
                tried.append(evaluate(plan, cohorts, waves, rate))
    feasible = [c for c in tried if c.feasible and c.done_days is not None]
    best = min(
        feasible,
        key=lambda c: (c.done_days, -c.min_margin, len(c.waves)),
        default=None,
    )
    return given, best, tried
