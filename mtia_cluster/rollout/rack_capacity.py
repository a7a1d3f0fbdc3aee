"""Requests/s and power of one rack of a generation serving a model under the plan's SLO.

Two sources, named in every summary:
- replay: R&R: `mtia_cluster.planning.capacity.capacity` (exact replay search, seconds per
  chip); per rack = its requests/s per platform unit x platform units per rack. LLM:
  `rollout.llm_capacity.llm_unit_capacity` (the same search on windows of many SLOs, for a
  group of hosts, under p99 end-to-end and optional TTFT/TPOT SLOs), x groups per unit x units
  per rack; the bisection bracket is kept as the figure's uncertainty.
- fast: the cost model's steady state. R&R: `rr_best_throughput` with the SLO's p99 as the
  single-batch latency budget, items/s per chip x accelerators / mean items per request
  (MLPerf DLRM-v2 query sizes, the capacity search's workload). LLM: `llm_offline_throughput`
  of one replica (smallest TP that fits, as the capacity search) at the Azure 2023
  conversation trace's mean lengths, x replicas / mean output tokens; an offline (all slots
  busy) figure, so it bounds throughput and does not check TTFT/TPOT.
Results are cached per run in a dict keyed by (model, chip, SLO, mode, search config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from mtia_cluster import fmt
from mtia_cluster.catalog import Catalog
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.estimators import llm_offline_throughput, rr_best_throughput
from mtia_cluster.planning.capacity import (
    LLM_LENGTHS,
    RR_SIZES,
    capacity,
    platform_for,
    replica_tp,
)
from mtia_cluster.rollout.llm_capacity import llm_unit_capacity
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.workloads import LLMModel, RRModel

if TYPE_CHECKING:
    from mtia_cluster.rollout.plan import Plan

MAX_NUM_SEQS = 256  # the engine's default continuous-batching limit


@dataclass(frozen=True)
class RackCapacity:
    """One rack of `chip`: requests/s at the SLO and its power at that load."""

    chip: str
    platform: str
    units: int  # platform units per rack
    requests_per_s: float
    power_w: float
    source: str  # fast | replay
    # replay search's lowest failing rate per rack (inf: none seen; NaN: not searched)
    lowest_failing_rps: float = math.nan
    detail: str = ""  # how the figure was obtained (LLM replay: group, window, SLO)


CacheKey = tuple[object, ...]


def rack_capacity(
    cat: Catalog,
    plan: Plan,
    chip: str,
    mode: str,
    units: int,
    cache: dict[CacheKey, RackCapacity],
) -> RackCapacity:
    """Capacity of one rack (`units` platform units of `chip`), cached per run by (model,
    chip, SLO, mode, LLM search config): a repeated cohort is measured once."""
    slo = plan.slo
    key: CacheKey = (plan.model, chip, slo, mode, plan.capacity_search.key(plan.slo_p99_s))
    if key not in cache:
        fast = _fast(cat, plan.model, chip, plan.slo_p99_s)
        cache[key] = _searched(cat, plan, chip, slo, fast) if mode == "replay" else fast
    one = cache[key]
    return replace(
        one,
        units=units,
        requests_per_s=one.requests_per_s * units,
        power_w=one.power_w * units,
        lowest_failing_rps=one.lowest_failing_rps * units,
    )


def _searched(
    cat: Catalog, plan: Plan, chip: str, slo: ServiceSLO, fast: RackCapacity
) -> RackCapacity:
    """Replay-based capacity of one platform unit (R&R: `capacity`; LLM: llm_capacity)."""
    model = cat.model(plan.model)
    if isinstance(model, LLMModel):
        u = llm_unit_capacity(cat, model, chip, slo, plan.capacity_search, fast.requests_per_s)
        slos = ", ".join(
            f"{name} p99 {fmt.number(fmt.ms(v))} ms"
            for name, v in (("e2e", slo.latency_ns), ("TTFT", slo.ttft_ns), ("TPOT", slo.tpot_ns))
            if v is not None
        )
        return RackCapacity(
            chip=chip,
            platform=fast.platform,
            units=1,
            requests_per_s=u.requests_per_s,
            power_w=u.power_w,
            source="replay",
            lowest_failing_rps=u.lowest_failing_rps,
            detail=f"{u.group_hosts}-host group, {u.window_s:g} s windows, {slos}, "
            f"rel_tol {plan.capacity_search.rel_tol:g}, {u.replays} replays",
        )
    res = capacity(plan.model, chip, ServiceSLO(latency_ns=slo.latency_ns), catalog=cat)
    return RackCapacity(
        chip=chip,
        platform=res.platform,
        units=1,
        requests_per_s=float(res.requests_per_s),
        power_w=float(res.accelerator_power_w + res.host_power_w),
        source="replay",
        detail="capacity search (planning/capacity.py defaults)",
    )


def _fast(cat: Catalog, model_name: str, chip: str, slo_p99_s: float) -> RackCapacity:
    """Cost-model capacity of one platform unit (see module doc)."""
    model = cat.model(model_name)
    platform = platform_for(cat, chip)
    p = cat.platform(platform)
    host = cat.host(p.host)
    host_w = p.hosts * host.power_w
    if isinstance(model, RRModel):
        best = rr_best_throughput(cat.chip(chip), model, host, slo_p99_s)
        mean_items = float(
            sample_sizes(entity_rng(0, StreamKind.ROLLOUT_MEAN_SIZES), RR_SIZES, 20000).mean()
        )
        rps = best.items_per_s_per_chip * p.accelerators / mean_items
        power_w = best.power_w * p.accelerators + host_w
    elif isinstance(model, LLMModel):
        tp = replica_tp(cat, model, platform)
        it = llm_iteration_model(cat.chip(chip), model, tp=tp)
        inp, out = sample_lengths(entity_rng(0, StreamKind.ROLLOUT_MEAN_SIZES), LLM_LENGTHS, 20000)
        mean_out = float(np.mean(out))
        llm = llm_offline_throughput(it, float(np.mean(inp)), mean_out, MAX_NUM_SEQS)
        rps = llm.output_tokens_per_s * (p.accelerators // tp) / mean_out
        power_w = cat.chip(chip).tdp_w * p.accelerators + host_w
    else:
        raise UserError(
            "rollouts need an R&R or LLM model", field="service.model", value=model_name
        )
    return RackCapacity(
        chip=chip,
        platform=platform,
        units=1,
        requests_per_s=rps,
        power_w=power_w,
        source="fast",
        detail="cost model",
    )
