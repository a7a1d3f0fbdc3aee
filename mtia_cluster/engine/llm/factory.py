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
prefix_caching         false   reuse cached KV blocks: by the trace's hash chains
                               (``prefix_blocks``), else by ``session_id``
disaggregation         none    ``{prefill_accelerators: n, link: scale_up|scale_out}``:
                               a prefill instance on the first n accelerators (tp = n), a
                               decode instance on the rest, KV sent over the link (default:
                               scale_up when the cell fits in the chip's scale-up domain)
====================== ======= ==========================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.config import Fields
from mtia_cluster.engine.cell import CellSpec
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.costs import IterationCost, probe_iteration_cost
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.llm import LLMIterationModel

CostCache = dict[tuple[Any, ...], IterationCost]


def _instance(
    it: LLMIterationModel, f: Fields, spec: CellSpec, cache: CostCache | None
) -> ReplicaScheduler:
    """A scheduler for iteration model `it` with the pool's limits."""
    limits = ReplicaLimits(
        max_num_batched_tokens=f.int("max_num_batched_tokens", 2048, positive=True),
        max_num_seqs=f.int("max_num_seqs", 256, positive=True),
        block_size=f.int("block_size", 16, positive=True),
        kv_capacity_tokens=it.kv_capacity_tokens,
        prefix_caching=f.bool("prefix_caching", False),
    )
    limits.validate(spec.file, spec.field_prefix)
    key = (it.chip.name, it.model.name, it.tp, it.pp, it.dtype, limits.max_num_batched_tokens)
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
    f = Fields(spec.pool, spec.file, spec.field_prefix)
    chips = len(spec.accelerator_ids)
    catalog = spec.catalog
    model = catalog.model(spec.model_name)
    if getattr(model, "kind", None) != "llm":
        raise UserError("not an LLM", file=spec.file, field=f.path("model"), value=spec.model_name)
    chip = catalog.chip(catalog.platform(spec.platform_name).chip)
    dtype = f.str("dtype", model.dtype)
    ids = np.asarray(spec.accelerator_ids, dtype=np.int32)
    host = spec.host_ids[0] if spec.host_ids else -1
    if f.has("disaggregation"):
        return _disaggregated(f, spec, chip, model, dtype, ids, host, cost_cache)
    pp = f.int("pp", 1, positive=True)
    tp = f.int("tp", max(1, chips // pp), positive=True)
    if tp * pp != chips:
        raise f.error("tp", f"tp x pp must equal the replica's {chips} accelerators", tp)
    it = llm_iteration_model(chip, model, tp=tp, pp=pp, dtype=dtype)
    return LLMReplicaCell(
        _instance(it, f, spec, cost_cache),
        accelerator_ids=ids,
        host_id=host,
        weight_bytes_per_accelerator=it.weight_bytes / chips,
        kv_bytes_per_token=it.kv_bytes_per_token,
    )


def _disaggregated(
    f: Fields,
    spec: CellSpec,
    chip: Any,
    model: Any,
    dtype: str,
    ids: np.ndarray,
    host: int,
    cache: CostCache | None,
) -> DisaggregatedCell:
    """A prefill instance on the first accelerators, a decode instance on the rest."""
    d = f.sub("disaggregation")
    chips = len(ids)
    n_pre = d.int("prefill_accelerators", max(1, chips // 2), positive=True)
    if n_pre >= chips:
        raise d.error("prefill_accelerators", f"must leave decode accelerators of {chips}", n_pre)
    default_link = "scale_up" if chips <= chip.scale_up_domain else "scale_out"
    link = d.str("link", default_link, choices=("scale_up", "scale_out"))
    bandwidth = chip.scale_up_bytes_per_s if link == "scale_up" else chip.scale_out_bytes_per_s
    it_pre = llm_iteration_model(chip, model, tp=n_pre, pp=1, dtype=dtype)
    it_dec = llm_iteration_model(chip, model, tp=chips - n_pre, pp=1, dtype=dtype)
    return DisaggregatedCell(
        _instance(it_pre, f, spec, cache),
        _instance(it_dec, f, spec, cache),
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
