"""N-1 failure drills in the exact replays: does a replayed moment hold its SLO with racks out?

    replay:
      drill: {racks: 1, at_fraction: 0.5, on_failure: retry}

For every replayed moment (gate, wave_peak, worst_headroom) a second replay of the same region
and hour runs with an engine fleet event (scenario `events:`, engine/events.py) that fails
hosts of the slice at `at_fraction` of the window (rounded up to the engine's window boundary)
for the rest of the window. The moment's own replay (and so the gates) is not changed.

Which racks: `racks` of the region's serving racks, taken from the version with the larger
per-rack capacity first (losing the biggest unit is the N-1 case), then the other version.

Scaled to the slice: the region loses N_v racks of version v (N_v x hosts per rack of its H_v
hosts); the slice of k_v hosts loses f_v = N_v x hosts per rack when the slice is the whole
region, else max(1, round(k_v x N_v x hosts per rack / H_v)) hosts, and keeps at least one
host of a version the region still serves (the slice grows to f_v + 1 hosts if needed). Before
the failure the slice is offered demand x slice capacity / region capacity (the moment's
utilization); after it, demand x slice capacity left / region capacity left, so the hosts that
are left run at the utilization the region's remaining racks would. When the slice is the
whole region the rate does not change. In-flight work on the failed hosts is retried on the
others (`on_failure: retry`, latency counted from the original arrival) or failed (`fail`).

Figures: p99 (region-weighted, as the moment's) of the requests arriving before and after the
failure, error rate after, requests retried / failed (slice, and the retried count scaled to
the region's failed hosts), the timeline's capacity with the racks out and the verdict
`N-1 OK` when the after-failure p99 <= SLO, its error rate <= the gate's maximum and the
demand fits the capacity left (`verdict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.models import Event
from mtia_cluster.engine.cell import STATUS_OK, RequestBatch
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results.run import run_folded
from mtia_cluster.rollout.moment_replay import Moment, measured_row, slice_hosts
from mtia_cluster.rollout.plan import DrillSpec, Plan
from mtia_cluster.rollout.region import VERSIONS
from mtia_cluster.rollout.slice import (
    EngineCohort,
    fitted_span_s,
    meets_slo,
    p99,
    region_weights,
    request_pools,
    sized_trace,
    slice_scenario,
)
from mtia_cluster.traces.generators.arrivals import poisson
from mtia_cluster.units import NS_PER_H


@dataclass(frozen=True, kw_only=True)
class DrillResult:
    """One moment's N-1 drill: the `drill_*` columns of its `replays/` row. Only the racks,
    the capacity left and the verdict are known when the drill leaves no capacity (the
    other figures are None: null)."""

    racks_old: int
    racks_new: int
    slice_hosts_old: int | None = None
    slice_hosts_new: int | None = None
    hosts_failed_old: int | None = None
    hosts_failed_new: int | None = None
    span_s: float | None = None
    at_s: float | None = None
    failed_at_ns: int | None = None
    offered_rps_before: float | None = None
    offered_rps_after: float | None = None
    requests: int | None = None
    every_request_once: bool | None = None
    p99_before_s: float | None = None
    p99_after_s: float | None = None
    error_rate_before: float | None = None
    error_rate_after: float | None = None
    requests_retried: int | None = None
    requests_failed: int | None = None
    retried_region_est: float | None = None
    capacity_after_rps: float
    timeline_ok: bool
    n1_ok: bool
    verdict: str

    def to_row(self) -> dict[str, Any]:
        """The `drill_*` columns (a figure that was not measured is left out: null)."""
        return measured_row(self, "drill_")


@dataclass(frozen=True)
class _Slice:
    """The drilled slice: hosts and failed hosts per version, offered rates before / after."""

    hosts: dict[str, int]
    failed: dict[str, int]
    versions: list[str]
    rate_before: float
    rate_after: float


def racks_out(serving: dict[str, int], rack_rps: dict[str, float], n: int) -> dict[str, int]:
    """Racks per version the drill fails: the larger per-rack capacity first."""
    order = sorted(VERSIONS, key=lambda v: (-rack_rps[v], VERSIONS.index(v)))
    out = dict.fromkeys(VERSIONS, 0)
    for v in order:
        out[v] = min(n, serving[v])
        n -= out[v]
    return out


def slice_failures(
    k: dict[str, int], region_hosts: dict[str, int], failed_hosts: dict[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """(slice hosts, failed slice hosts) per version, scaled as the module doc says."""
    k = dict(k)
    whole = all(k.get(v, 0) == region_hosts[v] for v in VERSIONS)
    f: dict[str, int] = {}
    for v in VERSIONS:
        if failed_hosts[v] <= 0 or region_hosts[v] <= 0:
            continue
        if whole:
            f[v] = failed_hosts[v]
            continue
        all_out = failed_hosts[v] >= region_hosts[v]
        if not all_out:
            k[v] = max(k.get(v, 0), 2)  # a failure and a host left
        share = failed_hosts[v] / region_hosts[v]
        f[v] = k[v] if all_out else min(k[v] - 1, max(1, round(k[v] * share)))
    return k, f


def drill_trace(
    rng: np.random.Generator, rate_before: float, rate_after: float, at_ns: int, span_ns: int
) -> np.ndarray:
    """Poisson arrivals at `rate_before` until `at_ns`, then `rate_after` until `span_ns`."""
    first = poisson(rng, rate_before, duration_s=at_ns / 1e9)
    if rate_after <= 0:
        return first
    second = at_ns + poisson(rng, rate_after, duration_s=(span_ns - at_ns) / 1e9)
    return np.concatenate([first, second[second < span_ns]])


def fail_event(spec: DrillSpec, hosts: list[int], at_ns: int) -> Event:
    """The engine fleet event failing `hosts` (region-local indices) at `at_ns`."""
    return Event(at_s=at_ns / 1e9, kind="fail", region="r", hosts=hosts,
                 on_failure=spec.on_failure)  # fmt: skip


def drill_metrics(
    res: RunOutput,
    trace: RequestBatch,
    at_ns: int,
    versions: list[str],
    shares: tuple[dict[str, float], dict[str, float]],
) -> dict[str, Any]:
    """p99 before / after the failure (region-weighted), error rate after, retried / failed
    requests, and the accounting check: every trace request exactly once in the results
    (DrillResult fields)."""
    r = res.requests
    ids = np.sort(r.request_id)
    once = len(ids) == len(trace) and bool((ids == np.sort(trace.request_id)).all())
    lat_s = (r.finish_ns - r.arrival_ns) / 1e9
    bad = r.status != STATUS_OK
    pool = request_pools(res)
    out: dict[str, Any] = {"requests": len(r), "every_request_once": once}
    for label, sel, share in (("before", r.arrival_ns < at_ns, shares[0]),
                              ("after", r.arrival_ns >= at_ns, shares[1])):  # fmt: skip
        w = region_weights(pool[sel], versions, share)
        out[f"p99_{label}_s"] = p99(lat_s[sel], w)
        out[f"error_rate_{label}"] = (
            float(np.average(bad[sel], weights=w)) if sel.any() else math.nan
        )
    out["requests_retried"] = sum(e["requests_retried"] for e in res.fleet_events)
    out["requests_failed"] = sum(e["requests_failed"] for e in res.fleet_events)
    out["failed_at_ns"] = res.fleet_events[0]["at_ns"] if res.fleet_events else -1
    return out


def n1_outcome(
    error_rate_after: float, slo_ok: bool, error_max: float, timeline_ok: bool
) -> tuple[bool, str]:
    """`N-1 OK` when the requests arriving after the failure meet the SLO (`slo_ok`: the one
    verdict, `slice.meets_slo`), their error rate <= the gate's maximum and the demand fits
    the timeline's capacity left: a replay window of about a second does not see a backlog
    that grows slowly, so a region over its remaining capacity is not N-1 safe even when the
    replayed p99 still holds."""
    reasons = []
    if not slo_ok:
        reasons.append("p99 > SLO")
    if not error_rate_after <= error_max:
        reasons.append("error rate > gate")
    if not timeline_ok:
        reasons.append("demand > capacity left" + ("" if reasons else " (replayed p99 holds)"))
    return not reasons, "N-1 OK" if not reasons else "N-1 FAIL: " + ", ".join(reasons)


def _drilled_slice(
    plan: Plan,
    ecs: dict[str, EngineCohort],
    m: Moment,
    failed: dict[str, int],
    cap_after: float,
) -> _Slice:
    """The slice replayed, the hosts it loses, and the rates offered before and after."""
    region_hosts = {v: m.serving[v] * ecs[v].hosts_per_rack for v in VERSIONS}
    failed_hosts = {v: failed[v] * ecs[v].hosts_per_rack for v in VERSIONS}
    k, f = slice_failures(slice_hosts(plan, m, ecs), region_hosts, failed_hosts)
    versions = [v for v in VERSIONS if k.get(v, 0) > 0]
    slice_cap = sum(k[v] * ecs[v].host_rps for v in versions)
    left_cap = slice_cap - sum(n * ecs[v].host_rps for v, n in f.items())
    rate_before = m.demand_rps * slice_cap / m.capacity_rps
    rate_after = m.demand_rps * left_cap / cap_after
    return _Slice(k, f, versions, rate_before, rate_after)


def run_drill(
    plan: Plan, cat: Catalog, ecs: dict[str, EngineCohort], m: Moment, region_index: int
) -> tuple[DrillResult, RequestBatch | None, RunOutput | None]:
    """The drill of moment `m`: its result, the trace and the engine's results (None when
    the drill leaves no capacity)."""
    spec = plan.replay.drill
    assert spec is not None
    rack_rps = {v: ecs[v].rack_rps for v in VERSIONS}
    failed = racks_out(m.serving, rack_rps, spec.racks)
    cap_after = max(m.capacity_rps - sum(failed[v] * rack_rps[v] for v in VERSIONS), 0.0)
    if m.capacity_rps <= 0 or cap_after <= 0:
        return DrillResult(racks_old=failed["old"], racks_new=failed["new"],
                           capacity_after_rps=cap_after, timeline_ok=False, n1_ok=False,
                           verdict="N-1 FAIL: no capacity left"), None, None  # fmt: skip
    s = _drilled_slice(plan, ecs, m, failed, cap_after)
    span_s = fitted_span_s(plan, max(s.rate_before, s.rate_after))
    step_ns = slice_scenario(plan, cat, ecs, s.hosts).report_interval_ns
    span_ns = round(span_s * 1e9)
    at_ns = -(-round(spec.at_fraction * span_ns) // step_ns) * step_ns  # a window boundary
    hour = round(m.time_ns / NS_PER_H)
    rng = entity_rng(plan.replay.seed, StreamKind.ROLLOUT_DRILL_TRAFFIC, region_index, hour)
    arrival = drill_trace(rng, s.rate_before, s.rate_after, at_ns, span_ns)
    trace = sized_trace(plan, cat, rng, arrival)
    first = {v: sum(s.hosts[u] for u in s.versions[: s.versions.index(v)]) for v in s.versions}
    hosts = sorted(first[v] + i for v, n in s.failed.items() for i in range(n))
    events = (fail_event(spec, hosts, at_ns),)
    res = run_folded(Simulation(slice_scenario(plan, cat, ecs, s.hosts, events), cat), trace)
    shares = (
        {v: m.serving[v] * rack_rps[v] / m.capacity_rps for v in s.versions},
        {v: (m.serving[v] - failed[v]) * rack_rps[v] / cap_after for v in s.versions},
    )
    figures = drill_metrics(res, trace, at_ns, s.versions, shares)
    slo_ok, _ = meets_slo(res, plan, arrivals_from_ns=at_ns)
    timeline_ok = m.demand_rps <= cap_after
    n1_ok, verdict = n1_outcome(
        figures["error_rate_after"], slo_ok, plan.gates.error_rate_max, timeline_ok
    )
    result = DrillResult(
        **figures,
        racks_old=failed["old"],
        racks_new=failed["new"],
        slice_hosts_old=s.hosts.get("old", 0),
        slice_hosts_new=s.hosts.get("new", 0),
        hosts_failed_old=s.failed.get("old", 0),
        hosts_failed_new=s.failed.get("new", 0),
        span_s=span_ns / 1e9,
        at_s=at_ns / 1e9,
        offered_rps_before=s.rate_before,
        offered_rps_after=s.rate_after,
        retried_region_est=figures["requests_retried"]
        * sum(failed[v] * ecs[v].hosts_per_rack for v in VERSIONS)
        / sum(s.failed.values()),
        capacity_after_rps=cap_after,
        timeline_ok=timeline_ok,
        n1_ok=n1_ok,
        verdict=verdict,
    )
    return result, trace, res
