"""Exact replays of one region at one moment of a rollout timeline.

A moment is one timeline row (a region at an hour): its serving racks by version, its demand
and the timeline's capacity and verdict. The replay builds that region as a slice scenario
(slice.py: one pool per serving version, with the version's engine terms), offers Poisson
traffic at the demand rate for a short window (request sizes as in the capacity search) and
runs the exact engine (`Simulation(scenario).run(trace)`).

A region too large to replay quickly is replayed as a slice: k_v hosts per serving version v
(at least one each, at most about `replay.max_hosts` in all, fewer while the window would
exceed `replay.max_requests`), offered demand x slice capacity / region capacity (timeline
per-rack figures), so the slice runs at the region's utilization. Throughput is scaled back
to the region. The window is max(span_s, 10 x SLO) long, cut to fit max_requests but never
below 5 x SLO. Every row says which slice and window it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.engine.cell import STATUS_OK
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results.run import run_folded
from mtia_cluster.rollout.plan import Plan
from mtia_cluster.rollout.region import VERSIONS
from mtia_cluster.rollout.slice import (
    EngineCohort,
    fitted_span_s,
    meets_slo,
    p99,
    replay_span_s,
    request_pools,
    sized_trace,
    slice_capacity_rps,
    slice_scenario,
)
from mtia_cluster.rollout.timeline import TimelineResult
from mtia_cluster.traces.generators.arrivals import poisson
from mtia_cluster.units import NS_PER_DAY, NS_PER_H


@dataclass(frozen=True)
class Moment:
    """One timeline row picked for a replay, and why."""

    kind: str  # gate | wave_peak | worst_headroom
    wave: int
    row: int
    region: str
    time_ns: int
    serving: dict[str, int]  # version -> serving racks
    demand_rps: float
    capacity_rps: float
    slo_ok: bool


@dataclass(frozen=True, kw_only=True)
class MomentReplay:
    """One replayed moment: the `replays/` row (docs/rollout.md); the slice and engine
    figures are None when the region has no serving racks (nothing replayed)."""

    kind: str
    wave: int
    region: str
    time_ns: int
    day: float
    racks_old_serving: int
    racks_new_serving: int
    region_hosts_old: int
    region_hosts_new: int
    slice_hosts_old: int | None = None
    slice_hosts_new: int | None = None
    slice_share: float | None = None
    span_s: float | None = None
    demand_rps: float
    capacity_rps: float
    offered_rps: float | None = None
    replayed_throughput_rps: float | None = None
    requests: int | None = None
    p99_s: float | None = None
    error_rate: float | None = None
    old_requests: int | None = None
    old_p99_s: float | None = None
    old_error_rate: float | None = None
    new_requests: int | None = None
    new_p99_s: float | None = None
    new_error_rate: float | None = None
    timeline_slo_ok: bool
    replay_slo_ok: bool
    verdict: str
    agrees: bool

    def to_row(self) -> dict[str, Any]:
        """The row's columns (a figure that was not measured is left out: null)."""
        return measured_row(self)


def measured_row(result: Any, prefix: str = "") -> dict[str, Any]:
    """A result dataclass as a `replays/` row: its fields as columns named `prefix` + field,
    the ones not measured (None) left out, so they are null in the table."""
    row = {prefix + f.name: getattr(result, f.name) for f in fields(result)}
    return {k: v for k, v in row.items() if v is not None}


def moment_at(res: TimelineResult, kind: str, wave: int, row: int) -> Moment:
    """The timeline row `row` as a moment."""
    tl = res.timeline
    return Moment(
        kind=kind,
        wave=wave,
        row=row,
        region=tl["region"][row],
        time_ns=int(tl["time_ns"][row]),
        serving={v: int(tl[f"racks_{v}_serving"][row]) for v in VERSIONS},
        demand_rps=float(tl["offered_rps"][row]),  # own demand +- failover
        capacity_rps=float(tl["capacity_rps"][row]),
        slo_ok=bool(tl["slo_ok"][row]),
    )


def slice_hosts(plan: Plan, m: Moment, ecs: dict[str, EngineCohort]) -> dict[str, int]:
    """Hosts per serving version in the replayed slice (all of them if few enough)."""
    region = {v: m.serving[v] * ecs[v].hosts_per_rack for v in VERSIONS if m.serving[v] > 0}
    total = sum(region.values())
    cap = plan.replay.max_hosts
    k = dict(region) if total <= cap else {
        v: max(1, round(cap * h / total)) for v, h in region.items()
    }  # fmt: skip
    span_s = replay_span_s(plan)
    while sum(k.values()) > len(k) and offered_rps(m, ecs, k) * span_s > plan.replay.max_requests:
        big = max(k, key=lambda v: (k[v], v))
        k[big] -= 1
    return k


def offered_rps(m: Moment, ecs: dict[str, EngineCohort], k: dict[str, int]) -> float:
    """Offered requests/s for a slice: demand x slice capacity / region capacity."""
    return m.demand_rps * slice_capacity_rps(ecs, k) / m.capacity_rps


def replay_moment(
    plan: Plan, cat: Catalog, ecs: dict[str, EngineCohort], m: Moment, region_index: int
) -> MomentReplay:
    """Replay moment `m` with the exact engine (see the module doc)."""
    base = _base_fields(m, ecs)
    if m.capacity_rps <= 0:
        return MomentReplay(**base, verdict="no serving racks", replay_slo_ok=False,
                            agrees=not m.slo_ok)  # fmt: skip
    k = slice_hosts(plan, m, ecs)
    rate = offered_rps(m, ecs, k)
    span_s = fitted_span_s(plan, rate)
    step = round(m.time_ns / NS_PER_H)
    rng = entity_rng(plan.replay.seed, StreamKind.ROLLOUT_MOMENT_TRAFFIC, region_index, step)
    trace = sized_trace(plan, cat, rng, poisson(rng, rate, duration_s=span_s))
    versions = [v for v in VERSIONS if k.get(v, 0) > 0]
    res = run_folded(Simulation(slice_scenario(plan, cat, ecs, k), cat), trace)
    share = slice_capacity_rps(ecs, k) / m.capacity_rps
    weight = {v: m.serving[v] * ecs[v].rack_rps / m.capacity_rps for v in versions}
    figures = _figures(plan, res, versions, share, weight)
    return MomentReplay(
        **base,
        **figures,
        slice_hosts_old=k.get("old", 0),
        slice_hosts_new=k.get("new", 0),
        slice_share=share,
        span_s=span_s,
        offered_rps=rate,
        agrees=figures["replay_slo_ok"] == m.slo_ok,
    )


def _figures(
    plan: Plan, res: RunOutput, versions: list[str], share: float, region_share: dict[str, float]
) -> dict[str, Any]:
    """p99 and error rate (not ok / all) per version and for the region (requests weighted
    by `slice.region_weights`); region-scaled throughput; the slice's SLO verdict
    (`meets_slo`) and the error-rate gate."""
    r = res.requests
    lat_s = (r.finish_ns - r.arrival_ns) / 1e9
    bad = r.status != STATUS_OK
    pool = request_pools(res)
    out: dict[str, Any] = {"requests": len(r)}
    w = np.ones(len(r))
    for v in VERSIONS:
        sel = pool == versions.index(v) if v in versions else np.zeros(len(r), dtype=bool)
        out[f"{v}_requests"] = int(sel.sum())
        out[f"{v}_p99_s"] = p99(lat_s[sel])
        out[f"{v}_error_rate"] = float(bad[sel].mean()) if sel.any() else math.nan
        if sel.any():
            w[sel] = region_share[v] / (sel.sum() / len(r))
    out["p99_s"] = p99(lat_s, w)
    out["error_rate"] = float(np.average(bad, weights=w)) if len(r) else math.nan
    # served rate: requests between the first and the last completion (about the offered rate
    # when the slice keeps up, its service rate when a backlog builds), scaled to the region
    busy_s = (int(r.finish_ns.max()) - int(r.finish_ns.min())) / 1e9 if len(r) > 1 else 0.0
    out["replayed_throughput_rps"] = (len(r) - 1) / busy_s / share if busy_s > 0 else math.nan
    slo_ok, why = meets_slo(res, plan)
    out["replay_slo_ok"] = slo_ok
    reasons = [] if slo_ok else [why]
    if out["error_rate"] > plan.gates.error_rate_max:
        reasons.append("error rate > gate")
    out["verdict"] = "ok" if not reasons else ", ".join(reasons)
    return out


def _base_fields(m: Moment, ecs: dict[str, EngineCohort]) -> dict[str, Any]:
    """The moment as the timeline saw it."""
    return {
        "kind": m.kind,
        "wave": m.wave,
        "region": m.region,
        "time_ns": m.time_ns,
        "day": m.time_ns / NS_PER_DAY,
        "racks_old_serving": m.serving["old"],
        "racks_new_serving": m.serving["new"],
        "region_hosts_old": m.serving["old"] * ecs["old"].hosts_per_rack,
        "region_hosts_new": m.serving["new"] * ecs["new"].hosts_per_rack,
        "demand_rps": m.demand_rps,
        "capacity_rps": m.capacity_rps,
        "timeline_slo_ok": m.slo_ok,
    }
