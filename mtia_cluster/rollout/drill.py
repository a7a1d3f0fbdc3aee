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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.config import rollout_plan as rp
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import STATUS_OK, RequestBatch
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError
from mtia_cluster.rollout.region import VERSIONS
from mtia_cluster.traces.generators.arrivals import poisson
from mtia_cluster.units import NS_PER_H

if TYPE_CHECKING:  # plan.py reads `replay.drill` with parse_drill: no import cycle at run time
    from mtia_cluster.rollout.plan import Plan
    from mtia_cluster.rollout.replay import EngineCohort, Moment

KIND_ROLLOUT_DRILL = 956  # spawn-key namespace: per-moment drill traffic


@dataclass(frozen=True)
class DrillSpec:
    racks: int  # racks of the region failed in the drill
    at_fraction: float  # of the replay window, when they fail
    on_failure: str  # retry | fail: what happens to their in-flight work


def parse_drill(d: rp.Drill | None, llm: bool, file: str | Path | None) -> DrillSpec | None:
    """`replay.drill` (validated by the plan model), or None. Refused for LLM plans: the engine
    fails LLM replicas, but the drill's slice scaling counts one engine host per rack share,
    which an LLM replica spanning several hosts breaks."""
    if d is None:
        return None
    if llm:
        raise UserError(
            "LLM replicas cannot fail in a drill yet (slice scaling)",
            file=file,
            field="replay.drill",
            value=d.model_dump(exclude_unset=True),
        )
    return DrillSpec(racks=d.racks, at_fraction=d.at_fraction, on_failure=d.on_failure)


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


def fail_event(spec: DrillSpec, hosts: list[int], at_ns: int) -> dict[str, Any]:
    """The scenario `events:` entry failing `hosts` (region-local indices) at `at_ns`."""
    return {"at_s": at_ns / 1e9, "kind": "fail", "region": "r", "hosts": hosts,
            "on_failure": spec.on_failure}  # fmt: skip


def drill_metrics(
    res: RunOutput,
    trace: RequestBatch,
    at_ns: int,
    versions: list[str],
    shares: tuple[dict[str, float], dict[str, float]],
) -> dict[str, Any]:
    """p99 before / after the failure (region-weighted), error rate after, retried / failed
    requests, and the accounting check: every trace request exactly once in the results."""
    from mtia_cluster.rollout.replay import _p99

    r = res.requests
    ids = np.sort(r.request_id)
    once = len(ids) == len(trace) and bool((ids == np.sort(trace.request_id)).all())
    lat_s = (r.finish_ns - r.arrival_ns) / 1e9
    bad = r.status != STATUS_OK
    acc_pool = np.asarray(res.topology.acc_pool, dtype=np.int64)
    pool = np.where(r.accelerator_id >= 0, acc_pool[np.maximum(r.accelerator_id, 0)], -1)
    out: dict[str, Any] = {"drill_requests": len(r), "drill_every_request_once": once}
    for label, sel, share in (("before", r.arrival_ns < at_ns, shares[0]),
                              ("after", r.arrival_ns >= at_ns, shares[1])):  # fmt: skip
        w = np.ones(int(sel.sum()))
        for i, v in enumerate(versions):
            mine = pool[sel] == i
            if mine.any() and share.get(v, 0.0) > 0:
                w[mine] = share[v] / (mine.sum() / len(w))
        out[f"drill_p99_{label}_s"] = _p99(lat_s[sel], w)
        out[f"drill_error_rate_{label}"] = (
            float(np.average(bad[sel], weights=w)) if sel.any() else math.nan
        )
    out["drill_requests_retried"] = sum(e["requests_retried"] for e in res.fleet_events)
    out["drill_requests_failed"] = sum(e["requests_failed"] for e in res.fleet_events)
    out["drill_failed_at_ns"] = res.fleet_events[0]["at_ns"] if res.fleet_events else -1
    return out


def n1_outcome(
    row: dict[str, Any], slo_ok: bool, error_max: float, timeline_ok: bool
) -> tuple[bool, str]:
    """`N-1 OK` when the requests arriving after the failure meet the SLO (`slo_ok`: the one
    verdict, `fleet.replay.meets_slo`), their error rate <= the gate's maximum and the
    demand fits the timeline's capacity left: a replay window of about a second does not
    see a backlog that grows slowly, so a region over its remaining capacity is not N-1 safe
    even when the replayed p99 still holds."""
    reasons = []
    err = row.get("drill_error_rate_after", math.nan)
    if not slo_ok:
        reasons.append("p99 > SLO")
    if not err <= error_max:
        reasons.append("error rate > gate")
    if not timeline_ok:
        reasons.append("demand > capacity left" + ("" if reasons else " (replayed p99 holds)"))
    return not reasons, "N-1 OK" if not reasons else "N-1 FAIL: " + ", ".join(reasons)


def no_capacity_row(failed: dict[str, int], cap_after: float) -> dict[str, Any]:
    """A drill that takes every serving rack out: nothing left to replay."""
    return {"drill_racks_old": failed["old"], "drill_racks_new": failed["new"],
            "drill_capacity_after_rps": cap_after, "drill_timeline_ok": False,
            "drill_n1_ok": False, "drill_verdict": "N-1 FAIL: no capacity left"}  # fmt: skip


def run_drill(
    plan: Plan, cat: Catalog, ecs: dict[str, EngineCohort], m: Moment, region_index: int
) -> tuple[dict[str, Any], RequestBatch | None, RunOutput | None]:
    """The drill of moment `m`: its row fields, the trace and the engine's results (None
    when the drill leaves no capacity)."""
    from mtia_cluster.rollout.replay import (
        _host_rps,
        _scenario_data,
        _span,
        meets_slo,
        sized_trace,
        slice_hosts,
    )

    spec = plan.replay.drill
    assert spec is not None
    rack_rps = {v: ecs[v].rack_rps for v in VERSIONS}
    failed = racks_out(m.serving, rack_rps, spec.racks)
    cap_after = max(m.capacity_rps - sum(failed[v] * rack_rps[v] for v in VERSIONS), 0.0)
    if m.capacity_rps <= 0 or cap_after <= 0:
        return no_capacity_row(failed, cap_after), None, None
    region_hosts = {v: m.serving[v] * ecs[v].hosts_per_rack for v in VERSIONS}
    failed_hosts = {v: failed[v] * ecs[v].hosts_per_rack for v in VERSIONS}
    k, f = slice_failures(slice_hosts(plan, m, ecs), region_hosts, failed_hosts)
    versions = [v for v in VERSIONS if k.get(v, 0) > 0]
    slice_cap = sum(k[v] * _host_rps(ecs[v]) for v in versions)
    left_cap = slice_cap - sum(n * _host_rps(ecs[v]) for v, n in f.items())
    rate_before = m.demand_rps * slice_cap / m.capacity_rps
    rate_after = m.demand_rps * left_cap / cap_after
    span_s = max(
        min(_span(plan), plan.replay.max_requests / max(rate_before, rate_after)),
        5.0 * plan.slo_p99_s,
    )
    data = _scenario_data(plan, cat, ecs, k, versions)
    step_ns = parse_scenario(data, None, cat).report_interval_ns
    span_ns = round(span_s * 1e9)
    at_ns = -(-round(spec.at_fraction * span_ns) // step_ns) * step_ns  # a window boundary
    rng = entity_rng(
        plan.replay.seed, KIND_ROLLOUT_DRILL, region_index, round(m.time_ns / NS_PER_H)
    )
    trace = sized_trace(plan, cat, rng, drill_trace(rng, rate_before, rate_after, at_ns, span_ns))
    first = {v: sum(k[u] for u in versions[: versions.index(v)]) for v in versions}
    hosts = [first[v] + i for v, n in f.items() for i in range(n)]
    data["events"] = [fail_event(spec, sorted(hosts), at_ns)]
    res = Simulation(parse_scenario(data, None, cat), cat).run(trace)
    shares = (
        {v: m.serving[v] * rack_rps[v] / m.capacity_rps for v in versions},
        {v: (m.serving[v] - failed[v]) * rack_rps[v] / cap_after for v in versions},
    )
    row = drill_metrics(res, trace, at_ns, versions, shares)
    region_failed = sum(failed_hosts.values())
    row.update(
        drill_racks_old=failed["old"],
        drill_racks_new=failed["new"],
        drill_slice_hosts_old=k.get("old", 0),
        drill_slice_hosts_new=k.get("new", 0),
        drill_hosts_failed_old=f.get("old", 0),
        drill_hosts_failed_new=f.get("new", 0),
        drill_span_s=span_ns / 1e9,
        drill_at_s=at_ns / 1e9,
        drill_offered_rps_before=rate_before,
        drill_offered_rps_after=rate_after,
        drill_retried_region_est=row["drill_requests_retried"] * region_failed / sum(f.values()),
        drill_capacity_after_rps=cap_after,
        drill_timeline_ok=m.demand_rps <= cap_after,
    )
    slo_ok, _ = meets_slo(res, plan, arrivals_from_ns=at_ns)
    row["drill_n1_ok"], row["drill_verdict"] = n1_outcome(
        row, slo_ok, plan.gates.error_rate_max, row["drill_timeline_ok"]
    )
    return row, trace, res
