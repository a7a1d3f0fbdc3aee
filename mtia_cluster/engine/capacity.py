"""Routing capacity of a cell: the weight the ``weighted`` router draws by (#16).

Cells report a capacity weight with their load (``LoadReport.capacity_weight``), in the
unit of their kind: an R&R host its items/s at full batches, a synthetic cell servers / mean
service time (requests/s), an LLM replica its accelerator count. Accelerator counts are not
capacity (an H100 replica and an MTIA replica of the same size serve at different rates), so
for LLM replicas the router's weight is the replica's token throughput in one full
iteration at its token budget, from its own iteration cost table (prefill-bound, no context:
the same measure for every replica of a service); a disaggregated replica counts its slower
stage (the sum over that stage's instances). The weight is fixed when the fleet is built
(it does not depend on load).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.engine.fabric.cells import unwrap_cell
from mtia_cluster.engine.llm.costs import AS_PER_S


def routing_capacity(group: Any) -> np.ndarray:
    """Per cell of `group` (a CellGroup): its routing capacity (see module doc)."""
    inner = group
    while hasattr(inner, "inner"):  # group wrappers (injected errors) delegate to their group
        inner = inner.inner
    stages = _stages(unwrap_cell(getattr(inner, "cell", None)))
    if not stages:
        return np.asarray(group.capacity(), dtype=np.float64)
    return np.array([min(sum(tokens_per_s(s) for s in stage) for stage in stages)])


def _stages(cell: Any) -> list[list[Any]]:
    """The LLM schedulers of a replica cell by stage: one stage of one, or the prefill
    instances and the decode instances of a disaggregated (N:M) replica; else none."""
    if cell is None:
        return []
    if hasattr(cell, "scheduler"):
        return [[cell.scheduler]]
    if hasattr(cell, "prefill") and hasattr(cell, "decode"):
        return [list(cell.prefill), list(cell.decode)]
    return []


def tokens_per_s(scheduler: Any) -> float:
    """Tokens per second of one iteration at the scheduler's token budget, no context."""
    tokens = int(scheduler.limits.max_num_batched_tokens)
    return tokens * AS_PER_S / max(1, int(scheduler.cost.duration_as(tokens, 0, 0)))
