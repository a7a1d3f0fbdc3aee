"""Whole-region outages on the rollout timeline, scheduled or drawn, and demand failover.

    outages:                               # scheduled
      - {region: eu-west-1, at_day: 100, duration_h: 12}
    failover: proportional                 # none | proportional (default)
    failures:                              # drawn (optional), next to rack/part failures
      seed: 1
      region: {mtbf_h: 8760, mttr_h: 6}

A scheduled outage starts at the first step at or after `at_day` and lasts `duration_h` rounded
up to whole steps (at least one). Drawn outages: each step each region that is up goes down
with probability 1 - exp(-step_h / mtbf_h), for an exponential time of mean mttr_h (rounded up
to whole steps), drawn from the region's own stream `(seed, StreamKind.ROLLOUT_REGION_OUTAGES,
region index)`: separate from the rack and part failure streams, so adding region outages
changes no other draw. A region that is down has capacity 0; its racks keep their states (swaps
in flight go on). Its demand is failed over (`apply_failover`): `none` = lost (SLO-violation
minutes of that region), `proportional` = shared by the regions that are up in proportion to
their capacity (lost only when no region is up with capacity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.config import rollout_plan as rp
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.rollout.rack_events import check_before_horizon, check_region
from mtia_cluster.units import NS_PER_DAY


@dataclass(frozen=True)
class Outage:
    """A scheduled outage of one region."""

    region: str
    at_ns: int
    duration_h: float


@dataclass(frozen=True)
class RegionFailureSpec:
    """Drawn whole-region outages (per region, exponential up and down times)."""

    mtbf_h: float
    mttr_h: float


def parse_outages(
    outages: list[rp.Outage], file: str | Path | None, regions: set[str], horizon_days: float
) -> tuple[Outage, ...]:
    """The plan's `outages:` (shape checked by the plan model): known regions, before the
    horizon (UserError naming file, field and value)."""
    out: list[Outage] = []
    for i, o in enumerate(outages):
        check_region(o.region, regions, file, f"outages[{i}].region")
        check_before_horizon(o.at_day, horizon_days, file, f"outages[{i}].at_day")
        out.append(Outage(o.region, round(o.at_day * NS_PER_DAY), o.duration_h))
    return tuple(sorted(out, key=lambda x: x.at_ns))


def parse_region_failures(r: rp.RegionFailure | None) -> RegionFailureSpec | None:
    """`failures.region: {mtbf_h, mttr_h}` or None."""
    return None if r is None else RegionFailureSpec(r.mtbf_h, r.mttr_h)


@dataclass
class OutageState:
    """Which regions are down; the step index until which each stays down."""

    names: list[str]
    step_h: float
    down_until: list[int]  # step index at which the region is up again
    rngs: list[np.random.Generator] = field(default_factory=list)

    @classmethod
    def new(cls, names: list[str], step_h: float, seed: int, drawn: bool) -> OutageState:
        rngs = [entity_rng(seed, StreamKind.ROLLOUT_REGION_OUTAGES, i) for i in range(len(names))]
        return cls(list(names), step_h, [0] * len(names), rngs if drawn else [])

    def step(
        self,
        k: int,
        now_ns: int,
        scheduled: list[Outage],
        drawn: RegionFailureSpec | None,
        events: list[dict[str, Any]],
    ) -> list[bool]:
        """Regions up (True) during step k; logs region_failure / region_repair events.
        `scheduled` are the outages taking effect at this step."""
        was_down = [k - 1 < d and k > 0 for d in self.down_until]
        details = [""] * len(self.names)
        for o in scheduled:
            i = self.names.index(o.region)
            n = max(1, math.ceil(o.duration_h / self.step_h - 1e-9))
            if k + n > self.down_until[i]:
                self.down_until[i] = k + n
                details[i] = details[i] or f"scheduled {o.duration_h:g} h"
        if drawn is not None:
            p = 1.0 - math.exp(-self.step_h / drawn.mtbf_h)
            for i, rng in enumerate(self.rngs):
                if rng.random() < p and k >= self.down_until[i]:
                    d_h = float(rng.exponential(drawn.mttr_h))
                    self.down_until[i] = k + max(1, math.ceil(d_h / self.step_h - 1e-9))
                    details[i] = f"drawn {d_h:.3g} h"
        up = [k >= d for d in self.down_until]
        for i, name in enumerate(self.names):
            if was_down[i] == (not up[i]):
                continue
            kind = "region_failure" if not up[i] else "region_repair"
            events.append({"time_ns": now_ns, "region": name, "event": kind,
                           "detail": details[i] if kind == "region_failure" else ""})  # fmt: skip
        return up


def apply_failover(
    up: list[bool], demand: list[float], capacity: list[float], mode: str
) -> dict[str, list[float]]:
    """Per region: failover received/sent, demand lost and demand offered to its racks
    (own - sent - lost + received). Conserves demand: sum(offered) + sum(lost) == sum(demand)
    up to rounding. A down region's capacity is taken as 0."""
    n = len(up)
    out_rps = [0.0] * n
    lost = [0.0] * n
    in_rps = [0.0] * n
    down_demand = sum(d for d, u in zip(demand, up, strict=True) if not u)
    cap_up = sum(c for c, u in zip(capacity, up, strict=True) if u and c > 0)
    for i in range(n):
        if up[i]:
            continue
        if mode == "proportional" and cap_up > 0:
            out_rps[i] = demand[i]
        else:
            lost[i] = demand[i]
    if mode == "proportional" and cap_up > 0 and down_demand > 0:
        for i in range(n):
            if up[i] and capacity[i] > 0:
                in_rps[i] = down_demand * capacity[i] / cap_up
    offered = [demand[i] - out_rps[i] - lost[i] + in_rps[i] for i in range(n)]
    return {"failover_in_rps": in_rps, "failover_out_rps": out_rps, "lost_rps": lost,
            "offered_rps": offered}  # fmt: skip


def outage_summary(
    tl: dict[str, list[Any]], events: list[dict[str, Any]], step_h: float, failover: str
) -> dict[str, Any]:
    """summary.json `outages`: counts, region-minutes down, the worst headroom of the regions
    that are up while another is down (where and when), SLO-violation minutes the outages
    caused (a down region's lost demand, or an up region that holds its own demand but not
    the failover it received), and demand lost or failed over (requests)."""
    up = np.asarray(tl["region_up"], dtype=bool)
    t_ns = np.asarray(tl["time_ns"], dtype=np.int64)
    region = np.asarray(tl["region"])
    head = np.asarray(tl["headroom"], dtype=np.float64)
    ok = np.asarray(tl["slo_ok"], dtype=bool)
    cap = np.asarray(tl["capacity_rps"], dtype=np.float64)
    dem = np.asarray(tl["demand_rps"], dtype=np.float64)
    lost = np.asarray(tl["lost_rps"], dtype=np.float64)
    sent = np.asarray(tl["failover_out_rps"], dtype=np.float64)
    step_min, step_s = step_h * 60.0, step_h * 3600.0
    during = np.isin(t_ns, np.unique(t_ns[~up])) & up  # up rows at steps with a region down
    caused = ~ok & ((~up & (lost > 0)) | (up & (dem <= cap)))
    out: dict[str, Any] = {
        "failover": failover,
        "count": sum(e["event"] == "region_failure" for e in events),
        "outage_minutes": float((~up).sum() * step_min),
        "slo_violation_minutes_caused": float(caused.sum() * step_min),
        "lost_requests": float(lost.sum() * step_s),
        "failover_requests": float(sent.sum() * step_s),
        "worst_headroom_during": None,
        "worst_headroom_region": None,
        "worst_headroom_day": None,
        "per_region_outage_minutes": {
            str(n): float((~up[region == n]).sum() * step_min) for n in dict.fromkeys(region)
        },
    }
    if during.any():
        j = int(np.argmin(np.where(during, head, np.inf)))
        out["worst_headroom_during"] = float(head[j])
        out["worst_headroom_region"] = str(region[j])
        out["worst_headroom_day"] = float(t_ns[j] / NS_PER_DAY)
    return out
