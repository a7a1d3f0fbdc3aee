"""Build an LLM replica cell from a :class:`~mtia_cluster.engine.cell.CellSpec`.

The pool's serving settings arrive typed and resolved (``config.scenario.LLMSettings``,
validated at load): ``tp``/``pp`` (tp x pp = the replica), ``dtype``, the iteration token
budget ``max_num_batched_tokens``, ``max_num_seqs``, ``block_size``,
``prefix_caching`` (reuse cached KV blocks by the trace's hash chains,
``prefix_blocks``, else by ``session_id``), ``ep`` (expert parallelism), the KV admission
``capacity_policy`` with its ``max_tokens`` and,
for a disaggregated replica, ``prefill_accelerators`` and the KV link. What is left to check
here needs the cost model: that the KV cache holds a block (``ReplicaLimits.validate``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.catalog import Chip
from mtia_cluster.config.scenario import LLMSettings
from mtia_cluster.engine.cell import CellSpec
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.costs import IterationCost, probe_iteration_cost
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
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
    spec: CellSpec, cost_cache: CostCache | None = None
) -> LLMReplicaCell | DisaggregatedCell:
    """The replica cell described by `spec` (raises UserError for impossible settings).

    `cost_cache` lets many identical replicas share one probed cost table.
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
    if s.prefill_accelerators is not None:
        return _disaggregated(s, spec, chip, model, ids, host, cost_cache)
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


def _disaggregated(
    s: LLMSettings,
    spec: CellSpec,
    chip: Chip,
    model: LLMModel,
    ids: np.ndarray,
    host: int,
    cache: CostCache | None,
) -> DisaggregatedCell:
    """A prefill instance on the first accelerators, a decode instance on the rest."""
    chips = len(ids)
    n_pre = s.prefill_accelerators or max(1, chips // 2)
    if n_pre >= chips:
        raise UserError(
            f"must leave decode accelerators of {chips}",
            file=spec.file,
            field=f"{spec.field_prefix}.disaggregation.prefill_accelerators",
            value=n_pre,
        )
    link = s.kv_link or ("scale_up" if chips <= chip.scale_up_domain else "scale_out")
    dtype = s.dtype
    bandwidth = chip.scale_up_bytes_per_s if link == "scale_up" else chip.scale_out_bytes_per_s
    it_pre = llm_iteration_model(chip, model, tp=n_pre, pp=1, dtype=dtype)
    it_dec = llm_iteration_model(chip, model, tp=chips - n_pre, pp=1, dtype=dtype)
    return DisaggregatedCell(
        _instance(it_pre, s, spec, cache),
        _instance(it_dec, s, spec, cache),
        prefill_ids=ids[:n_pre],
        decode_ids=ids[n_pre:],
        host_id=host,
        kv_bytes_per_token=it_pre.kv_bytes_per_token,
        link_bytes_per_s=bandwidth,
        weight_bytes_per_accelerator=(
            it_pre.weight_bytes / n_pre,
            it_dec.weight_bytes / (chips - n_pre),
        ),
    )
