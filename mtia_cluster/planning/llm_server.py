"""MLPerf-Server-style LLM capacity of one replica, by exact replay and bracketing search.

The highest Poisson arrival rate at which a replica's p99 TTFT and p99 TPOT stay within
their bounds, found by replaying the same request set (common random numbers: unit
inter-arrival gaps scaled by 1/rate) through the exact continuous-batching scheduler at each
candidate rate. Used by `validate` (h100-llama2-70b-server) and by capacity planning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog import Chip
from mtia_cluster.engine.llm.costs import probe_iteration_cost
from mtia_cluster.engine.llm.limits import ReplicaLimits, tpot_ns
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.planning.search import SearchResult, find_max_rate
from mtia_cluster.workloads import LLMModel

KIND_LLM_SERVER_WORKLOAD = 901  # spawn-key namespace of this module's random stream


@dataclass(frozen=True)
class LengthDist:
    """Lognormal token lengths with a mean and coefficient of variation, clipped to a range."""

    mean: float
    cv: float
    lo: int = 1
    hi: int = 1024

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sigma2 = math.log1p(self.cv**2)
        x = rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), n)
        return np.clip(np.rint(x), self.lo, self.hi).astype(np.int64)


@dataclass(frozen=True)
class ServerResult:
    rate_per_s: float  # highest arrival rate meeting both bounds
    output_tokens_per_s: float  # at that rate, whole replica
    chips: int
    search: SearchResult


def llm_server_capacity(
    chip: Chip,
    model: LLMModel,
    *,
    tp: int,
    dtype: str,
    kv_dtype: str,
    limits: ReplicaLimits,
    input_len: LengthDist,
    output_len: LengthDist,
    ttft_p99_s: float,
    tpot_p99_s: float,
    n_requests: int = 3000,
    seed: int = 0,
    rel_tol: float = 0.02,
) -> ServerResult:
    """Search the replica's Server capacity (see module docstring)."""
    it = llm_iteration_model(chip, model, tp=tp, dtype=dtype, kv_dtype=kv_dtype)
    limits = ReplicaLimits(
        limits.max_num_batched_tokens, limits.max_num_seqs, limits.block_size, it.kv_capacity_tokens
    )
    cost = probe_iteration_cost(it, limits.max_num_batched_tokens)
    rng = entity_rng(seed, KIND_LLM_SERVER_WORKLOAD)
    gaps = rng.exponential(1.0, n_requests)
    isl, osl = input_len.sample(rng, n_requests), output_len.sample(rng, n_requests)
    cum_gaps = np.cumsum(gaps)

    def meets(rate: float) -> bool:
        arrival_ns = np.floor(cum_gaps / rate * 1e9).astype(np.int64)
        sched = ReplicaScheduler(cost, limits)
        sched.add_many(arrival_ns, isl, osl)
        sched.run_until(None)
        out = sched.outcome()
        if out.rejected.any():
            return False
        ttft = (out.first_token_ns - arrival_ns) / 1e9
        tpot = tpot_ns(out, osl) / 1e9
        return bool(
            np.percentile(ttft, 99) <= ttft_p99_s and np.nanpercentile(tpot, 99) <= tpot_p99_s
        )

    # Start from the offline-style guess: a replica emitting ~1,000 tokens/s per chip.
    guess = 1000.0 * it.chips / output_len.mean
    search = find_max_rate(
        lambda rates: [meets(r) for r in rates], guess, parallel=2, rel_tol=rel_tol
    )
    mean_osl = float(osl.mean())
    return ServerResult(search.best_rate, search.best_rate * mean_osl, it.chips, search)
