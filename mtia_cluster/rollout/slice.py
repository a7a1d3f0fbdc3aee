"""A region of a rollout in engine terms: the typed scenario of a slice of its hosts, traffic
for it and how its requests are judged. Shared by the moment replays (moment_replay.py) and
the N-1 drills (drill.py).

A slice is k_v hosts per serving version v (one pool per version, on the version's platform,
with the version's engine terms: a model version's `service_time_multiplier` and injected
`error_rate`), offered demand x slice capacity / region capacity, so it runs at the region's
utilization. Its requests are sized as in the capacity search, and its figures weight each
version's requests by its share of the region's capacity (`region_weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.models import Event
from mtia_cluster.config.scenario import Scenario
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.errors import UserError
from mtia_cluster.planning.capacity import (
    LLM_LENGTHS,
    RR_SIZES,
    one_region_scenario,
    platform_for,
    pool_model,
)
from mtia_cluster.results.run import summarize
from mtia_cluster.results.verdict import WINDOW_RULES
from mtia_cluster.rollout.plan import Plan
from mtia_cluster.rollout.region import VERSIONS
from mtia_cluster.rollout.timeline import Cohort
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.workloads import LLMModel, RRModel


@dataclass(frozen=True)
class EngineCohort:
    """One version's racks as the engine sees them."""

    label: str
    platform: str
    hosts_per_rack: int  # platform units per rack x hosts per unit
    rack_rps: float  # the timeline's per-rack capacity
    service_time_multiplier: float
    error_rate: float

    @property
    def host_rps(self) -> float:
        """The timeline's capacity of one host of this version."""
        return self.rack_rps / self.hosts_per_rack


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
        platform = platform_for(cat, chip)
        hosts = plan.units_per_rack.get(chip, 1) * cat.platform(platform).hosts
        mult, err = 1.0, 0.0
        if version == "new" and t.kind == "model_version":
            mult, err = slower, t.error_rate
        out[version] = EngineCohort(
            cohorts[version].label, platform, hosts, cohorts[version].rps, mult, err
        )
    return out


def slice_capacity_rps(ecs: dict[str, EngineCohort], hosts: dict[str, int]) -> float:
    """The timeline's capacity of a slice of `hosts` hosts per version."""
    return sum(n * ecs[v].host_rps for v, n in hosts.items())


def replay_span_s(plan: Plan) -> float:
    """The window a moment is replayed for before it is cut to fit `replay.max_requests`:
    max(replay.span_s, 10 x the p99 SLO)."""
    return max(plan.replay.span_s, 10.0 * plan.slo_p99_s)


def fitted_span_s(plan: Plan, rate_rps: float) -> float:
    """The replay window at `rate_rps`: `replay_span_s`, cut to fit `replay.max_requests`,
    never below 5 x the p99 SLO."""
    return max(min(replay_span_s(plan), plan.replay.max_requests / rate_rps), 5.0 * plan.slo_p99_s)


def slice_scenario(
    plan: Plan,
    cat: Catalog,
    ecs: dict[str, EngineCohort],
    hosts: dict[str, int],
    events: tuple[Event, ...] = (),
) -> Scenario:
    """The validated scenario of a slice: one region `r`, one pool per version with hosts
    (in VERSIONS order: pool i serves the i-th such version), engine fleet `events`."""
    model = cat.model(plan.model)
    assert isinstance(model, (RRModel, LLMModel))
    pools = [
        pool_model(
            cat,
            model,
            ecs[v].platform,
            n,
            service_time_multiplier=ecs[v].service_time_multiplier,
            error_rate=ecs[v].error_rate,
        )
        for v in VERSIONS
        if (n := hosts.get(v, 0)) > 0
    ]
    name = f"rollout-replay-{plan.name}"
    return one_region_scenario(
        cat, name, plan.replay.seed, pools, events=events, slo_p99_ms=plan.slo_p99_s * 1e3
    )


def sized_trace(
    plan: Plan, cat: Catalog, rng: np.random.Generator, arrival: np.ndarray
) -> RequestBatch:
    """Requests at `arrival` with sizes drawn as the capacity search does (R&R: MLPerf
    DLRM-v2 query sizes; LLM: Azure 2023 conversation lengths)."""
    if isinstance(cat.model(plan.model), RRModel):
        return make_requests(arrival, items=sample_sizes(rng, RR_SIZES, len(arrival)))
    inp, out = sample_lengths(rng, LLM_LENGTHS, len(arrival))
    return make_requests(arrival, input_tokens=inp, output_tokens=out)


def request_pools(res: RunOutput) -> np.ndarray:
    """Per request, the pool index of the accelerator that served it (-1: none)."""
    r = res.requests
    acc_pool = np.asarray(res.topology.acc_pool, dtype=np.int64)
    return np.where(r.accelerator_id >= 0, acc_pool[np.maximum(r.accelerator_id, 0)], -1)


def region_weights(pool: np.ndarray, versions: list[str], share: dict[str, float]) -> np.ndarray:
    """Per request, its weight in the region's figures: a version's share of the region's
    capacity over its share of the slice's requests (1 where the version has no share), so a
    version the slice over-represents counts as much as it would in the region."""
    w = np.ones(len(pool))
    for i, v in enumerate(versions):
        mine = pool == i
        if mine.any() and share.get(v, 0.0) > 0:
            w[mine] = share[v] / (mine.sum() / len(w))
    return w


def p99(x: np.ndarray, w: np.ndarray | None = None) -> float:
    """99th percentile of `x` (weighted: the smallest x with >= 99% of the weight at or
    below it; unweighted: numpy's linear interpolation)."""
    if not len(x):
        return math.nan
    if w is None or np.all(w == w[0]):
        return float(np.percentile(x, 99))
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(x[order][min(int(np.searchsorted(cw, 0.99 * cw[-1])), len(x) - 1)])


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
