"""Requests/s and power of one rack of a generation serving a model under the plan's SLO.

Two sources, named in every summary:
- replay: `mtia_cluster.planning.capacity.capacity` (exact replay search, seconds per chip);
  per rack = its requests/s per platform unit x platform units per rack.
- fast: the cost model's steady state. R&R: `rr_best_throughput` with the SLO's p99 as the
  single-batch latency budget, items/s per chip x accelerators / mean items per request
  (MLPerf DLRM-v2 query sizes, the capacity search's workload). LLM: `llm_offline_throughput`
  of one replica (smallest TP that fits, as the capacity search) at the Azure 2023
  conversation trace's mean lengths, x replicas / mean output tokens; an offline (all slots
  busy) figure, so it bounds throughput and does not check TTFT/TPOT.
Results are cached per run in a dict keyed by (model, chip, slo_p99_s, mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.estimators import llm_offline_throughput, rr_best_throughput
from mtia_cluster.planning.capacity import LLM_LENGTHS, RR_SIZES, SLO, _pool, capacity
from mtia_cluster.planning.capacity import platform_for as _platform_for
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.workloads import LLMModel, RRModel

KIND_FLEET_LENGTHS = 951  # spawn-key namespace: mean request sizes for the fast estimate
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


CacheKey = tuple[str, str, float, str]


def rack_capacity(
    cat: Catalog,
    model_name: str,
    chip: str,
    slo_p99_s: float,
    mode: str,
    units: int,
    cache: dict[CacheKey, RackCapacity],
) -> RackCapacity:
    """Capacity of one rack (`units` platform units of `chip`), cached by (model, chip, slo)."""
    key = (model_name, chip, slo_p99_s, mode)
    if key not in cache:
        unit = _replay(cat, model_name, chip, slo_p99_s) if mode == "replay" else None
        if unit is None:
            unit = _fast(cat, model_name, chip, slo_p99_s)
        cache[key] = unit
    one = cache[key]
    return RackCapacity(
        chip=one.chip,
        platform=one.platform,
        units=units,
        requests_per_s=one.requests_per_s * units,
        power_w=one.power_w * units,
        source=one.source,
    )


def _replay(cat: Catalog, model_name: str, chip: str, slo_p99_s: float) -> RackCapacity | None:
    """Replay-based capacity of one platform unit (None for LLMs: use the cost model)."""
    model = cat.model(model_name)
    if not isinstance(model, RRModel):
        return None
    res = capacity(model_name, chip, SLO(p99_s=slo_p99_s), catalog=cat)
    return RackCapacity(
        chip=chip,
        platform=res.platform,
        units=1,
        requests_per_s=float(res.requests_per_s),
        power_w=float(res.accelerator_power_w + res.host_power_w),
        source="replay",
    )


def _fast(cat: Catalog, model_name: str, chip: str, slo_p99_s: float) -> RackCapacity:
    """Cost-model capacity of one platform unit (see module doc)."""
    model = cat.model(model_name)
    platform = _platform_for(cat, chip)
    p = cat.platform(platform)
    host = cat.host(p.host)
    host_w = p.hosts * host.power_w
    if isinstance(model, RRModel):
        best = rr_best_throughput(cat.chip(chip), model, host, slo_p99_s)
        mean_items = float(sample_sizes(entity_rng(0, KIND_FLEET_LENGTHS), RR_SIZES, 20000).mean())
        rps = best.items_per_s_per_chip * p.accelerators / mean_items
        power_w = best.power_w * p.accelerators + host_w
    elif isinstance(model, LLMModel):
        tp = int(_pool(cat, model, platform)["tp"])
        it = llm_iteration_model(cat.chip(chip), model, tp=tp)
        inp, out = sample_lengths(entity_rng(0, KIND_FLEET_LENGTHS), LLM_LENGTHS, 20000)
        mean_out = float(np.mean(out))
        llm = llm_offline_throughput(it, float(np.mean(inp)), mean_out, MAX_NUM_SEQS)
        rps = llm.output_tokens_per_s * (p.accelerators // tp) / mean_out
        power_w = cat.chip(chip).tdp_w * p.accelerators + host_w
    else:
        raise UserError(
            "rollouts need an R&R or LLM model", field="service.model", value=model_name
        )
    return RackCapacity(
        chip=chip, platform=platform, units=1, requests_per_s=rps, power_w=power_w, source="fast"
    )
