"""Named fast estimators: closed-form steady states built on the cost model.

These answer "what does one accelerator sustain" without a replay. They are estimators, not
the simulation: the engine replays requests exactly; these pre-screen and validate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog.chip import Chip
from mtia_cluster.catalog.system import Host
from mtia_cluster.perf.llm import LLMIterationModel
from mtia_cluster.perf.rr import rr_batch_cost
from mtia_cluster.workloads.rr import RRModel


@dataclass(frozen=True)
class RRServing:
    """Best steady-state point of an R&R model on one accelerator."""

    batch: int
    items_per_s_per_chip: float
    latency_s: float
    bound: str
    power_w: float


def rr_best_throughput(
    chip: Chip,
    model: RRModel,
    host: Host | None,
    latency_budget_s: float = float("inf"),
    dtype: str | None = None,
    max_batch: int | None = None,
) -> RRServing:
    """Highest items/s per chip over batch sizes up to `max_batch` (default the model's)
    whose single-batch latency fits `latency_budget_s` (batch sizes are powers of two, then
    the cap). A scenario with its own published batch (MLPerf Offline) passes it here."""
    cap = int(max_batch or model.max_batch)
    sizes = sorted({*(2**k for k in range(int(np.log2(cap)) + 1)), cap})
    cost = rr_batch_cost(chip, model, np.array(sizes), dtype=dtype, host=host)
    ok = cost.latency_s <= latency_budget_s
    ok[0] = True  # batch 1 always allowed: the answer then says the budget is missed
    tput = np.where(ok, cost.throughput_per_s, -1.0)
    i = int(np.argmax(tput))
    return RRServing(
        batch=sizes[i],
        items_per_s_per_chip=float(tput[i] / cost.group),
        latency_s=float(cost.latency_s[i]),
        bound=cost.bound[i],
        power_w=float(cost.power_w[i]),
    )


@dataclass(frozen=True)
class LLMOffline:
    """Steady state of continuous batching with every slot busy (MLPerf Offline)."""

    batch: int
    output_tokens_per_s: float  # whole replica
    iteration_s: float
    bound: str


def llm_offline_throughput(
    it: LLMIterationModel, input_tokens: float, output_tokens: float, max_num_seqs: int
) -> LLMOffline:
    """Output tokens/s of a replica kept full: each iteration decodes `batch` sequences and,
    to replace the `batch / output_tokens` that finish, prefills that many prompts.

    The batch is the smaller of `max_num_seqs` and what the KV cache holds at the average
    context (input + output / 2).
    """
    avg_ctx = input_tokens + output_tokens / 2.0
    batch = int(min(max_num_seqs, it.kv_capacity_tokens // max(avg_ctx, 1.0)))
    batch = max(batch, 1)
    new_prompts = batch / output_tokens
    prefill = new_prompts * input_tokens
    pairs = batch * avg_ctx + new_prompts * input_tokens**2 / 2.0
    t = float(it.time_s(prefill, batch, batch * avg_ctx + prefill, attn_pairs=pairs))
    return LLMOffline(
        batch=batch,
        output_tokens_per_s=batch / t,
        iteration_s=t,
        bound=it.bound(prefill, batch, batch * avg_ctx + prefill),
    )
