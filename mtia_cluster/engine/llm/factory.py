"""Build an LLM replica cell from a :class:`~mtia_cluster.engine.cell.CellSpec`.

Pool fields (all optional, read with ``config.Fields`` so errors name file and field):

====================== ======= ==========================================================
field                  default meaning
====================== ======= ==========================================================
tp                     chips   tensor-parallel degree (inside the scale-up domain)
pp                     1       pipeline stages; ``tp * pp`` = the cell's accelerators
dtype                  model's weight/compute dtype for the cost model
max_num_batched_tokens 2048    token budget of one iteration (chunked prefill)
max_num_seqs           256     most running requests
block_size             16      KV-cache block, tokens
prefix_caching         false   reuse a session's cached KV blocks (``session_id``)
====================== ======= ==========================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.config import Fields
from mtia_cluster.engine.cell import CellSpec
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.costs import IterationCost, probe_iteration_cost
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model


def build_llm_cell(
    spec: CellSpec, cost_cache: dict[tuple[Any, ...], IterationCost] | None = None
) -> LLMReplicaCell:
    """The replica cell described by `spec` (raises UserError for impossible settings).

    `cost_cache` lets many identical replicas share one probed cost table.
    """
    f = Fields(spec.pool, spec.file, spec.field_prefix)
    chips = len(spec.accelerator_ids)
    pp = f.int("pp", 1, positive=True)
    tp = f.int("tp", max(1, chips // pp), positive=True)
    if tp * pp != chips:
        raise f.error("tp", f"tp x pp must equal the replica's {chips} accelerators", tp)
    catalog = spec.catalog
    model = catalog.model(spec.model_name)
    if getattr(model, "kind", None) != "llm":
        raise UserError("not an LLM", file=spec.file, field=f.path("model"), value=spec.model_name)
    chip = catalog.chip(catalog.platform(spec.platform_name).chip)
    dtype = f.str("dtype", model.dtype)
    it = llm_iteration_model(chip, model, tp=tp, pp=pp, dtype=dtype)
    limits = ReplicaLimits(
        max_num_batched_tokens=f.int("max_num_batched_tokens", 2048, positive=True),
        max_num_seqs=f.int("max_num_seqs", 256, positive=True),
        block_size=f.int("block_size", 16, positive=True),
        kv_capacity_tokens=it.kv_capacity_tokens,
        prefix_caching=f.bool("prefix_caching", False),
    )
    limits.validate(spec.file, spec.field_prefix)
    key = (chip.name, model.name, tp, pp, dtype, limits.max_num_batched_tokens)
    cost = None if cost_cache is None else cost_cache.get(key)
    if cost is None:
        cost = probe_iteration_cost(it, limits.max_num_batched_tokens)
        if cost_cache is not None:
            cost_cache[key] = cost
    return LLMReplicaCell(
        ReplicaScheduler(cost, limits),
        accelerator_ids=np.asarray(spec.accelerator_ids, dtype=np.int32),
        host_id=spec.host_ids[0] if spec.host_ids else -1,
        weight_bytes_per_accelerator=it.weight_bytes / chips,
        kv_bytes_per_token=it.kv_bytes_per_token,
    )
