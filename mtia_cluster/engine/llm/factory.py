"""Build an LLM replica cell from a :class:`~mtia_cluster.engine.cell.CellSpec`.

The pool's serving settings arrive typed and resolved (``config.scenario.LLMSettings``,
validated at load): ``tp``/``pp`` (tp x pp = the replica), ``dtype``, the iteration token
budget ``max_num_batched_tokens``, ``max_num_seqs``, ``block_size``,
``prefix_caching`` (reuse cached KV blocks by the trace's hash chains,
``prefix_blocks``, else by ``session_id``), ``ep`` (expert parallelism), the KV admission
``capacity_policy`` with its ``max_tokens`` and, for a disaggregated replica, its prefill and
decode pools (``pd``) and the KV link. What is left to check here needs the cost model: that
the KV cache holds a block (``ReplicaLimits.validate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.catalog import Chip
from mtia_cluster.config.models import AFFINITY_WEIGHT, LOAD_WEIGHT, ScenarioFile
from mtia_cluster.config.models import Router as RouterConfig
from mtia_cluster.config.scenario import LLMSettings
from mtia_cluster.engine.cell import CellSpec
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.costs import IterationCost, probe_iteration_cost
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.pd_routing import link_table
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.router import Router
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.llm import LLMIterationModel
from mtia_cluster.workloads import LLMModel

CostCache = dict[tuple[Any, ...], IterationCost]


def _instance(
    it: LLMIterationModel, s: LLMSettings, spec: CellSpec, cache: CostCache | None
) -> ReplicaScheduler:
    """A scheduler for iteration model `it` with the pool's limits."""
    limits = ReplicaLimits(
        max_num_batched_tokens=s.max_num_batched_tokens,
        max_num_seqs=s.max_num_seqs,
        block_size=s.block_size,
        kv_capacity_tokens=it.kv_capacity_tokens,
        prefix_caching=s.prefix_caching,
        capacity_policy=s.capacity_policy,
        max_tokens=s.max_tokens,
    )
    limits.validate(spec.file, spec.field_prefix)
    key = (
        it.chip.name,
        it.model.name,
        it.tp,
        it.pp,
        it.ep,
        it.dtype,
        limits.max_num_batched_tokens,
    )
    cost = None if cache is None else cache.get(key)
    if cost is None:
        cost = probe_iteration_cost(it, limits.max_num_batched_tokens)
        if cache is not None:
            cache[key] = cost
    return ReplicaScheduler(cost, limits)


def build_llm_cell(
    spec: CellSpec, cost_cache: CostCache | None = None, pd: PDContext | None = None
) -> LLMReplicaCell | DisaggregatedCell:
    """The replica cell described by `spec` (raises UserError for impossible settings).

    `cost_cache` lets many identical replicas share one probed cost table; `pd` is the
    scenario's context of a disaggregated replica (defaults: the scenario defaults).
    """
    s = spec.llm
    chips = len(spec.accelerator_ids)
    catalog = spec.catalog
    model = catalog.model(spec.model_name)
    if not isinstance(model, LLMModel):
        raise UserError(
            "not an LLM", file=spec.file, field=f"{spec.field_prefix}.model", value=spec.model_name
        )
    chip = catalog.chip(catalog.platform(spec.platform_name).chip)
    ids = np.asarray(spec.accelerator_ids, dtype=np.int32)
    host = spec.host_ids[0] if spec.host_ids else -1
    if s.pd is not None:
        return _disaggregated(s, spec, chip, model, ids, host, cost_cache, pd or PDContext())
    if s.tp * s.ep * s.pp != chips:  # resolved at load; a hand-built CellSpec can disagree
        raise UserError(
            f"tp x ep x pp must equal the replica's {chips} accelerators",
            file=spec.file,
            field=f"{spec.field_prefix}.tp",
            value=s.tp,
        )
    it = llm_iteration_model(chip, model, tp=s.tp, pp=s.pp, dtype=s.dtype, ep=s.ep)
    return LLMReplicaCell(
        _instance(it, s, spec, cost_cache),
        accelerator_ids=ids,
        host_id=host,
        weight_bytes_per_accelerator=it.weight_bytes / chips,
        kv_bytes_per_token=it.kv_bytes_per_token,
    )


@dataclass(frozen=True)
class PDContext:
    """What a disaggregated replica takes from its scenario and topology: the window length
    (its inner routing happens at window boundaries), the service's router policy and
    weights (for its prefill instances), and the scale-up domain of each of its
    accelerators (engine/topology.py; None: position in the replica // domain size)."""

    report_interval_ns: int = round(ScenarioFile.model_fields["report_interval_ms"].default * 1e6)
    policy: str = RouterConfig.model_fields["policy"].default
    router_weights: tuple[float, float] = (AFFINITY_WEIGHT, LOAD_WEIGHT)
    domains: tuple[int, ...] | None = None


def _disaggregated(
    s: LLMSettings,
    spec: CellSpec,
    chip: Chip,
    model: LLMModel,
    ids: np.ndarray,
    host: int,
    cache: CostCache | None,
    ctx: PDContext,
) -> DisaggregatedCell:
    """Prefill instances on the first accelerators, decode instances on the rest."""
    pd = s.pd
    assert pd is not None
    if pd.accelerators != len(ids):  # resolved at load; a hand-built CellSpec can disagree
        raise UserError(
            f"the prefill and decode pools need {pd.accelerators} accelerators",
            file=spec.file,
            field=f"{spec.field_prefix}.disaggregation",
            value=len(ids),
        )
    domains = (
        np.asarray(ctx.domains) if ctx.domains else np.arange(len(ids)) // chip.scale_up_domain
    )
    n_pre = pd.prefill_instances * pd.prefill_tp
    it_pre = llm_iteration_model(chip, model, tp=pd.prefill_tp, pp=1, dtype=s.dtype)
    it_dec = llm_iteration_model(chip, model, tp=pd.decode_tp, pp=1, dtype=s.dtype)
    tp_p = pd.prefill_tp
    pre_at = [slice(k * tp_p, (k + 1) * tp_p) for k in range(pd.prefill_instances)]
    dec_at = [
        slice(n_pre + k * pd.decode_tp, n_pre + (k + 1) * pd.decode_tp)
        for k in range(pd.decode_instances)
    ]
    router = Router(
        ctx.policy,
        np.arange(pd.prefill_instances),
        np.full(pd.prefill_instances, float(pd.prefill_tp)),
        entity_rng(spec.seed, StreamKind.CELL, spec.cell_id, 1),
        ctx.router_weights,
    )
    return DisaggregatedCell(
        [_instance(it_pre, s, spec, cache) for _ in pre_at],
        [_instance(it_dec, s, spec, cache) for _ in dec_at],
        prefill_ids=[ids[a] for a in pre_at],
        decode_ids=[ids[a] for a in dec_at],
        host_id=host,
        kv_bytes_per_token=it_pre.kv_bytes_per_token,
        links=link_table(
            chip, [domains[a] for a in pre_at], [domains[a] for a in dec_at], s.kv_link
        ),
        router=router,
        report_interval_ns=ctx.report_interval_ns,
        weight_bytes_per_accelerator=(
            it_pre.weight_bytes / pd.prefill_tp,
            it_dec.weight_bytes / pd.decode_tp,
        ),
    )
