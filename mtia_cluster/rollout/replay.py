"""Exact replays of one region at one moment of a rollout timeline.

A moment is one timeline row (a region at an hour): its serving racks by version, its demand
and the timeline's capacity and verdict. The replay builds that region as a scenario (one
pool per serving version, on the version's platform, with the version's engine terms: a
model version's `service_time_multiplier` and injected `error_rate`), offers Poisson traffic
at the demand rate for a short window (request sizes as in the capacity search) and runs the
exact engine (`Simulation(scenario).run(trace)`).

A region too large to replay quickly is replayed as a slice: k_v hosts per serving version v
(at least one each, at most about `replay.max_hosts` in all, fewer while the window would
exceed `replay.max_requests`), offered demand x slice capacity / region capacity (timeline
per-rack figures), so the slice runs at the region's utilization. Throughput is scaled back
to the region. The window is max(span_s, 10 x SLO) long, cut to fit max_requests but never
below 5 x SLO. Every row says which slice and window it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import STATUS_OK, RequestBatch, make_requests
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError
from mtia_cluster.planning.capacity import LLM_LENGTHS, RR_SIZES, _pool
from mtia_cluster.planning.capacity import platform_for as _platform_for
from mtia_cluster.results.run import summarize
from mtia_cluster.results.verdict import WINDOW_RULES
from mtia_cluster.rollout.plan import Plan
from mtia_cluster.rollout.region import VERSIONS
from mtia_cluster.rollout.simulate import Cohort, Result
from mtia_cluster.traces.generators.arrivals import poisson
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.units import NS_PER_H
from mtia_cluster.workloads import RRModel

KIND_ROLLOUT_REPLAY = 953  # spawn-key namespace: per-moment replay traffic


@dataclass(frozen=True)
class EngineCohort:
    """One version's racks as the engine sees them."""

    label: str
    platform: str
    hosts_per_rack: int  # platform units per rack x hosts per unit
    rack_rps: float  # the timeline's per-rack capacity
    service_time_multiplier: float
    error_rate: float


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


def engine_cohorts(plan: Plan, cat: Catalog, cohorts: dict[str, Cohort]) -> dict[str, EngineCohort]:
    """Old and new version in engine terms. A model version runs on the old chip with
    service time x latency_multiplier / perf_multiplier (its throughput delta and injected
    latency regression as one slowdown of every batch) and its injected error rate."""
    t = plan.target
    slower = t.latency_multiplier / t.perf_multiplier
    llm = not isinstance(cat.model(plan.model), RRModel)
    if t.kind == "model_version" and slower != 1.0 and llm:
        raise UserError(
            "a model version of an LLM cannot be replayed (LLM pools take no "
            "service_time_multiplier); use --no-replay or replay.enabled: false",
            file=plan.file,
            field="target.perf_multiplier",
            value=t.perf_multiplier,
        )
    out: dict[str, EngineCohort] = {}
    for version, chip in (("old", t.from_generation), ("new", t.to_generation)):
        platform = _platform_for(cat, chip)
        hosts = plan.units_per_rack.get(chip, 1) * cat.platform(platform).hosts
        mult, err = 1.0, 0.0
        if version == "new" and t.kind == "model_version":
            mult, err = t.latency_multiplier / t.perf_multiplier, t.error_rate
        out[version] = EngineCohort(
            cohorts[version].label, platform, hosts, cohorts[version].rps, mult, err
        )
    return out


def moment_at(res: Result, kind: str, wave: int, row: int) -> Moment:
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
    while sum(k.values()) > len(k) and _rate(m, ecs, k) * _span(plan) > plan.replay.max_requests:
        big = max(k, key=lambda v: (k[v], v))
        k[big] -= 1
    return k


def _host_rps(ec: EngineCohort) -> float:
    return ec.rack_rps / ec.hosts_per_rack


def _rate(m: Moment, ecs: dict[str, EngineCohort], k: dict[str, int]) -> float:
    """Offered requests/s for a slice: demand x slice capacity / region capacity."""
    slice_cap = sum(k[v] * _host_rps(ecs[v]) for v in k)
    return m.demand_rps * slice_cap / m.capacity_rps


def _span(plan: Plan) -> float:
    return max(plan.replay.span_s, 10.0 * plan.slo_p99_s)


def replay_moment(
    plan: Plan, cat: Catalog, ecs: dict[str, EngineCohort], m: Moment, region_index: int
) -> dict[str, Any]:
    """Replay moment `m` with the exact engine; one output row (see docs/rollout.md)."""
    row = _base_row(m, ecs)
    if m.capacity_rps <= 0:
        row.update(verdict="no serving racks", replay_slo_ok=False)
        row["agrees"] = row["replay_slo_ok"] == m.slo_ok
        return row
    k = slice_hosts(plan, m, ecs)
    rate = _rate(m, ecs, k)
    span_s = max(min(_span(plan), plan.replay.max_requests / rate), 5.0 * plan.slo_p99_s)
    step = round(m.time_ns / NS_PER_H)
    rng = entity_rng(plan.replay.seed, KIND_ROLLOUT_REPLAY, region_index, step)
    trace = sized_trace(plan, cat, rng, poisson(rng, rate, duration_s=span_s))
    versions = [v for v in VERSIONS if k.get(v, 0) > 0]
    res = Simulation(_scenario(plan, cat, ecs, k, versions), cat).run(trace)
    share = sum(k[v] * _host_rps(ecs[v]) for v in k) / m.capacity_rps
    weight = {v: m.serving[v] * ecs[v].rack_rps / m.capacity_rps for v in versions}
    row.update(_metrics(plan, res, versions, share, weight))
    row.update(
        slice_hosts_old=k.get("old", 0),
        slice_hosts_new=k.get("new", 0),
        slice_share=share,
        span_s=span_s,
        offered_rps=rate,
    )
    row["agrees"] = row["replay_slo_ok"] == m.slo_ok
    return row


def sized_trace(
    plan: Plan, cat: Catalog, rng: np.random.Generator, arrival: np.ndarray
) -> RequestBatch:
    """Requests at `arrival` with sizes drawn as the capacity search does (R&R: MLPerf
    DLRM-v2 query sizes; LLM: Azure 2023 conversation lengths)."""
    if isinstance(cat.model(plan.model), RRModel):
        return make_requests(arrival, items=sample_sizes(rng, RR_SIZES, len(arrival)))
    inp, out = sample_lengths(rng, LLM_LENGTHS, len(arrival))
    return make_requests(arrival, input_tokens=inp, output_tokens=out)


def _scenario(
    plan: Plan, cat: Catalog, ecs: dict[str, EngineCohort], k: dict[str, int], versions: list[str]
) -> Any:
    return parse_scenario(_scenario_data(plan, cat, ecs, k, versions), None, cat)


def _scenario_data(
    plan: Plan, cat: Catalog, ecs: dict[str, EngineCohort], k: dict[str, int], versions: list[str]
) -> dict[str, Any]:
    """The scenario mapping of a slice: one region, one pool per serving version."""
    model = cat.model(plan.model)
    pools = []
    for v in versions:
        pool = _pool(cat, model, ecs[v].platform, k[v])  # type: ignore[arg-type]
        if ecs[v].service_time_multiplier != 1.0:
            pool["service_time_multiplier"] = ecs[v].service_time_multiplier
        if ecs[v].error_rate > 0:
            pool["error_rate"] = ecs[v].error_rate
        pools.append(pool)
    data = {
        "name": f"rollout-replay-{plan.name}",
        "seed": plan.replay.seed,
        "regions": [{"name": "r", "pools": pools}],
        "slo": {"svc": {"p99_ms": plan.slo_p99_s * 1e3}},
    }
    return data


def _metrics(
    plan: Plan, res: Any, versions: list[str], share: float, region_share: dict[str, float]
) -> dict[str, Any]:
    """p99 and error rate (not ok / all) per version and for the region; region-scaled
    throughput; the slice's SLO verdict (`meets_slo`) and the error-rate gate. The
    region's figures weight each version's requests by its share of the region's capacity
    over its share of the slice's requests, so a version the slice over-represents (at least
    one host each) counts as much as it would in the region."""
    r = res.requests
    lat_s = (r.finish_ns - r.arrival_ns) / 1e9
    bad = r.status != STATUS_OK
    acc_pool = np.asarray(res.topology.acc_pool, dtype=np.int64)
    pool = np.where(r.accelerator_id >= 0, acc_pool[np.maximum(r.accelerator_id, 0)], -1)
    out: dict[str, Any] = {"requests": len(r)}
    w = np.ones(len(r))
    for v in VERSIONS:
        sel = pool == versions.index(v) if v in versions else np.zeros(len(r), dtype=bool)
        out[f"{v}_requests"] = int(sel.sum())
        out[f"{v}_p99_s"] = _p99(lat_s[sel])
        out[f"{v}_error_rate"] = float(bad[sel].mean()) if sel.any() else math.nan
        if sel.any():
            w[sel] = region_share[v] / (sel.sum() / len(r))
    out["p99_s"] = _p99(lat_s, w)
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


def meets_slo(res: RunOutput, plan: Plan, arrivals_from_ns: int | None = None) -> tuple[bool, str]:
    """The one verdict (results.summarize, WINDOW_RULES: a window of seconds has no minimum
    duration or early stopping) of the slice's requests against the plan's SLO; the
    reason when it is INVALID."""
    judged = summarize(
        res, rules=WINDOW_RULES, slos={"svc": plan.slo}, arrivals_from_ns=arrivals_from_ns
    ).summary["services"][0]["verdict"]
    if judged["result"] == "VALID":
        return True, ""
    return False, "SLO INVALID: " + "; ".join(judged["reasons"][:1])


def _p99(x: np.ndarray, w: np.ndarray | None = None) -> float:
    """99th percentile of `x` (weighted: the smallest x with >= 99% of the weight at or
    below it; unweighted: numpy's linear interpolation)."""
    if not len(x):
        return math.nan
    if w is None or np.all(w == w[0]):
        return float(np.percentile(x, 99))
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(x[order][min(int(np.searchsorted(cw, 0.99 * cw[-1])), len(x) - 1)])


def _base_row(m: Moment, ecs: dict[str, EngineCohort]) -> dict[str, Any]:
    return {
        "kind": m.kind,
        "wave": m.wave,
        "region": m.region,
        "time_ns": m.time_ns,
        "day": m.time_ns / (24 * NS_PER_H),
        "racks_old_serving": m.serving["old"],
        "racks_new_serving": m.serving["new"],
        "region_hosts_old": m.serving["old"] * ecs["old"].hosts_per_rack,
        "region_hosts_new": m.serving["new"] * ecs["new"].hosts_per_rack,
        "demand_rps": m.demand_rps,
        "capacity_rps": m.capacity_rps,
        "timeline_slo_ok": m.slo_ok,
    }
