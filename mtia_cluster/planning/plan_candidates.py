"""The candidate space of a plan and each candidate's estimated capacity per platform unit.

A candidate is one chip (deployed as its catalog platform unit: a rack or a server, as
`capacity` uses) with one combination of serving settings. Its capacity per unit is
estimated in closed form from the cost model (`perf/`), not replayed: that is the pruning
step of the search (docs/planning.md, "Search"); finalists are replayed exactly later.

* R&R: `perf.rr_best_throughput` at batch limits up to the candidate's `max_items` whose
  single-batch latency fits `latency_share` of the SLO bound minus the batching wait.
* LLM colocated: `perf.llm_offline_throughput` (continuous batching kept full) at sequence
  caps up to `max_num_seqs` whose iteration fits `latency_share` of the TPOT bound, limited
  by the prompts the token budget lets in per iteration.
* LLM disaggregated: the replica is one host; its prefill instances' prompts/s (chunks of
  the token budget) against its decode instances' completions/s, the smaller wins.

Every estimate is multiplied by `target_utilization` (queueing headroom; the replays decide).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.models import Batching, Disaggregation, LLMPool, PDRole, RRPool
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.estimators import llm_offline_throughput, rr_best_throughput
from mtia_cluster.planning.capacity import platform_for
from mtia_cluster.planning.plan_file import Plan, PlanService
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.units import NS_PER_S

# defaults of the settings a plan does not list (the scenario's own defaults)
RR_DEFAULTS = {"max_items": None, "max_wait_us": 2000.0}  # None: the model's max batch
LLM_DEFAULTS = {
    "tp": None,  # None: the smallest TP that fits (capacity.replica_tp)
    "ep": 1,
    "max_num_batched_tokens": 2048,
    "max_num_seqs": 256,
    "prefill_share": 0.0,
}


@dataclass
class Candidate:
    """One chip x settings for one service, with its estimate per platform unit."""

    service: str
    chip: str
    platform: str
    settings: dict[str, Any]
    unit_hosts: int
    unit_accelerators: int
    rps_per_unit: float = 0.0  # estimated, at target utilization
    bound: str = ""
    varied: tuple[str, ...] = ()  # the settings the plan gives several values (in the label)
    infeasible: str | None = None  # why it cannot serve (does not fit, misses the SLO)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        shown = " ".join(f"{k}={setting_text(self.settings[k])}" for k in self.varied)
        return f"{self.chip} {shown}".strip()


def setting_text(value: Any) -> str:
    """A setting as the plan file wrote it: a whole float without its `.0` (max_wait_us=1000,
    not 1000.0; the file's `1000` is read as a float), other values as they are."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Sizes:
    """Mean request sizes of the plan's workload (the capacity search's distributions)."""

    items: float
    input_tokens: float
    output_tokens: float


def candidates(cat: Catalog, plan: Plan, service: PlanService, sizes: Sizes) -> list[Candidate]:
    """Every chip x settings combination of `service`, each estimated (see module doc)."""
    kind = plan.kinds[service.name]
    defaults = RR_DEFAULTS if kind == "rr" else LLM_DEFAULTS
    given = service.candidates
    keys = list(defaults)
    lists = [getattr(given, k) or [defaults[k]] for k in keys]
    out = []
    for chip in given.chips:
        platform = platform_for(cat, chip)
        p = cat.platform(platform)
        for combo in itertools.product(*lists):
            c = Candidate(
                service=service.name,
                chip=chip,
                platform=platform,
                settings=dict(zip(keys, combo, strict=True)),
                unit_hosts=p.hosts,
                unit_accelerators=p.accelerators,
                varied=tuple(k for k in keys if len(getattr(given, k) or ()) > 1),
            )
            _estimate(cat, c, service.model, plan.slos[service.name], plan, sizes)
            out.append(c)
    return out


def _estimate(
    cat: Catalog, c: Candidate, model_name: str, slo: ServiceSLO, plan: Plan, sizes: Sizes
) -> None:
    opts = plan.doc.search
    try:
        if slo.kind == "rr":
            per_unit, c.bound = _rr_rate(cat, c, model_name, slo, opts.latency_share, sizes)
        else:
            per_unit, c.bound = _llm_rate(cat, c, model_name, slo, opts.latency_share, sizes)
    except UserError as exc:
        c.infeasible = exc.reason
        return
    if per_unit <= 0:
        c.infeasible = "no batch meets the SLO in the cost model"
        return
    c.rps_per_unit = per_unit * opts.target_utilization


def _rr_rate(
    cat: Catalog, c: Candidate, model_name: str, slo: ServiceSLO, share: float, sizes: Sizes
) -> tuple[float, str]:
    """Requests/s of one unit at saturation, and the cost model's bound."""
    model: Any = cat.model(model_name)
    p = cat.platform(c.platform)
    limit = c.settings["max_items"] or model.max_batch
    c.settings["max_items"] = int(limit)
    budget_s = (slo.latency_ns or 0) / NS_PER_S * share - c.settings["max_wait_us"] / 1e6
    if slo.latency_ns is not None and budget_s <= 0:
        raise UserError("batching wait exceeds the latency share", value=c.settings)
    best = rr_best_throughput(
        cat.chip(c.chip),
        model,
        cat.host(p.host),
        latency_budget_s=budget_s if slo.latency_ns is not None else float("inf"),
        max_batch=int(limit),
    )
    if slo.latency_ns is not None and best.latency_s > budget_s:
        return 0.0, best.bound
    return best.items_per_s_per_chip * c.unit_accelerators / sizes.items, best.bound


def _llm_rate(
    cat: Catalog, c: Candidate, model_name: str, slo: ServiceSLO, share: float, sizes: Sizes
) -> tuple[float, str]:
    """Requests/s of one unit at saturation (colocated or disaggregated), and the bound."""
    from mtia_cluster.planning.capacity import replica_tp

    model: Any = cat.model(model_name)
    s = c.settings
    if s["tp"] is None:
        s["tp"] = replica_tp(cat, model, c.platform)
    if s["prefill_share"] > 0 and s["ep"] > 1:
        raise UserError("a P:D replica takes no expert parallelism", value=s)
    if s["max_num_batched_tokens"] < s["max_num_seqs"]:
        raise UserError("token budget below the batch limit", value=s)
    p = cat.platform(c.platform)
    size = s["tp"] * s["ep"]
    if size > p.accelerators_per_host or p.accelerators_per_host % size:
        raise UserError("replica does not divide a host", value=size)
    it = llm_iteration_model(cat.chip(c.chip), model, tp=s["tp"], ep=s["ep"])
    tpot_s = (slo.tpot_ns / NS_PER_S * share) if slo.tpot_ns else float("inf")
    ttft_s = (slo.ttft_ns / NS_PER_S * share) if slo.ttft_ns else float("inf")
    prompt_s = float(
        it.time_s(sizes.input_tokens, 0, sizes.input_tokens, attn_pairs=sizes.input_tokens**2 / 2)
    )
    if prompt_s > ttft_s:
        raise UserError("a mean prompt's prefill exceeds the TTFT share", value=prompt_s)
    replicas = c.unit_accelerators // size
    if s["prefill_share"] > 0:
        rps, bound = _disaggregated(it, s, p.accelerators_per_host // size, tpot_s, sizes)
        return rps * replicas / (p.accelerators_per_host // size), bound
    best, bound = 0.0, ""
    for cap in _caps(s["max_num_seqs"]):
        off = llm_offline_throughput(it, sizes.input_tokens, sizes.output_tokens, cap)
        if off.iteration_s > tpot_s:
            continue
        admit = max(s["max_num_batched_tokens"] - off.batch, 0) / sizes.input_tokens
        rps = min(off.batch / sizes.output_tokens, admit) / off.iteration_s
        if rps > best:
            best, bound = rps, off.bound
    return best * replicas, bound


def _caps(limit: int) -> list[int]:
    """Sequence caps tried: powers of two below `limit`, and `limit`."""
    return sorted({*(2**k for k in range(int(np.log2(limit)) + 1)), int(limit)})


def _disaggregated(
    it: Any, s: dict[str, Any], instances: int, tpot_s: float, sizes: Sizes
) -> tuple[float, str]:
    """Requests/s of one host-sized P:D replica of `instances` instances."""
    n_pre = prefill_instances(s["prefill_share"], instances)
    budget = float(s["max_num_batched_tokens"])
    chunk_s = float(it.time_s(budget, 0, budget, attn_pairs=budget * sizes.input_tokens / 2))
    prefill_rps = budget / sizes.input_tokens / chunk_s
    ctx = sizes.input_tokens + sizes.output_tokens / 2
    decode_rps, bound = 0.0, ""
    for cap in _caps(s["max_num_seqs"]):
        batch = max(1, int(min(cap, it.kv_capacity_tokens // ctx)))
        t = float(it.time_s(0, batch, batch * ctx))
        if t <= tpot_s and batch / sizes.output_tokens / t > decode_rps:
            decode_rps = batch / sizes.output_tokens / t
            bound = it.bound(0, batch, batch * ctx)
    return min(n_pre * prefill_rps, (instances - n_pre) * decode_rps), bound


def prefill_instances(share: float, instances: int) -> int:
    """Prefill instances of a P:D replica: `share` of them, at least one of each side."""
    if instances < 2:
        raise UserError("a P:D replica needs at least two instances per host", value=instances)
    return min(max(round(share * instances), 1), instances - 1)


def pool_of(cat: Catalog, c: Candidate, model: str, units: int) -> RRPool | LLMPool:
    """The scenario pool of `units` platform units of candidate `c`."""
    hosts = units * c.unit_hosts
    s = c.settings
    if "max_items" in s:
        return RRPool(
            service=c.service,
            model=model,
            platform=c.platform,
            hosts=hosts,
            batching=Batching(max_items=s["max_items"], max_wait_us=s["max_wait_us"]),
        )
    common: dict[str, Any] = {
        "max_num_batched_tokens": s["max_num_batched_tokens"],
        "max_num_seqs": s["max_num_seqs"],
    }
    if s["prefill_share"] > 0:
        per_host = cat.platform(c.platform).accelerators_per_host
        n = per_host // s["tp"]
        pre = prefill_instances(s["prefill_share"], n)
        common["accelerators_per_replica"] = per_host
        common["disaggregation"] = Disaggregation(
            prefill=PDRole(instances=pre, tp=s["tp"]), decode=PDRole(instances=n - pre, tp=s["tp"])
        )
    else:
        common.update(tp=s["tp"], ep=s["ep"], accelerators_per_replica=s["tp"] * s["ep"])
    return LLMPool(service=c.service, model=model, platform=c.platform, hosts=hosts, **common)
