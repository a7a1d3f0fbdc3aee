"""MLPerf-style LLM throughput of one replica by exact replay: Offline and Server.

Offline (LoadGen's way): every query is issued at time zero and the replica's continuous-
batching scheduler drains them; throughput = output tokens / time of the last completion.
Server: the highest Poisson arrival rate at which p99 TTFT and p99 TPOT stay within their
bounds, found by replaying the same request pool (common random numbers: unit inter-arrival
gaps scaled by 1/rate) at each candidate rate; each replay issues enough queries to span the
run's minimum duration at that rate (LoadGen's 600 s unless the caller sets the submission's
own; capped by the pool). Its throughput is LoadGen's "Completed tokens per second": every
output token of the run over the time its last sample completed (loadgen/results.cc,
``token_count / final_query_all_samples_done_time``), so the drain after the last arrival
counts against it. Used by `validate` and by capacity planning.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog import Chip
from mtia_cluster.engine.llm.costs import IterationCost, probe_iteration_cost
from mtia_cluster.engine.llm.limits import ReplicaLimits, tpot_ns
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.planning.search import SearchResult, find_max_rate
from mtia_cluster.workloads import LLMModel

LOADGEN_MIN_DURATION_S = 600.0  # LoadGen server minimum run (mlperf.conf)
STEADY_FROM = 0.1  # offline capacity is measured from this quantile of admissions on


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
    # LoadGen's Completed tokens per second at that rate, whole replica: output tokens of the
    # run / time its last sample completed (the drain after the last arrival included)
    output_tokens_per_s: float
    chips: int
    search: SearchResult
    scheduled_tokens_per_s: float = 0.0  # rate x mean output length (no drain)
    queries: int = 0  # queries of the replay at that rate


@dataclass(frozen=True)
class OfflineResult:
    output_tokens_per_s: float  # whole replica: LoadGen's metric, tokens / last completion
    chips: int
    requests: int
    makespan_s: float
    # Capacity while the batch is fed: output tokens made between the admission of the
    # STEADY_FROM quantile of queries (after the start-up transient, when every query of the
    # first batch prefills and then decodes in lockstep) and the last admission (the drain
    # after it is a finite-run artefact), per second of that window.
    steady_tokens_per_s: float


def loadgen_p99(values: np.ndarray) -> float:
    """LoadGen's 99th percentile: the sorted samples' element at index floor(0.99 n)
    (loadgen/results.cc, ``latencies[sample_count * percentile]``); NaNs (one-token samples'
    TPOT) are left out."""
    x = np.sort(values[~np.isnan(values)])
    return float(x[min(len(x) - 1, int(len(x) * 0.99))]) if len(x) else 0.0


def _tokens_by(t_ns: int, first_ns: np.ndarray, finish_ns: np.ndarray, osl: np.ndarray) -> float:
    """Output tokens made by `t_ns`: whole requests, plus in-flight ones pro rata."""
    done = finish_ns <= t_ns
    live = (first_ns <= t_ns) & ~done
    span = np.maximum(finish_ns[live] - first_ns[live], 1)
    part = 1.0 + (osl[live] - 1.0) * (t_ns - first_ns[live]) / span
    return float(osl[done].sum() + part.sum())


def _setup(
    chip: Chip,
    model: LLMModel,
    tp: int,
    dtype: str,
    kv_dtype: str,
    limits: ReplicaLimits,
    ep: int = 1,
    kv_free_fraction: float | None = None,
) -> tuple[int, ReplicaLimits, IterationCost]:
    it = llm_iteration_model(
        chip, model, tp=tp, dtype=dtype, kv_dtype=kv_dtype, ep=ep, kv_free_fraction=kv_free_fraction
    )
    limits = dataclasses.replace(limits, kv_capacity_tokens=it.kv_tokens(kv_free_fraction))
    return it.chips, limits, probe_iteration_cost(it, limits.max_num_batched_tokens)


def _pool(
    n: int, input_len: LengthDist, output_len: LengthDist, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cumulative unit gaps, input lengths, output lengths) of the request pool."""
    rng = entity_rng(seed, StreamKind.LLM_SERVER_WORKLOAD)
    gaps = rng.exponential(1.0, n)
    isl, osl = input_len.sample(rng, n), output_len.sample(rng, n)
    return np.cumsum(gaps), isl, osl


def llm_offline_replay(
    chip: Chip,
    model: LLMModel,
    *,
    tp: int,
    dtype: str,
    kv_dtype: str,
    limits: ReplicaLimits,
    input_len: LengthDist,
    output_len: LengthDist,
    n_requests: int = 3000,
    seed: int = 0,
    ep: int = 1,
    kv_free_fraction: float | None = None,
) -> OfflineResult:
    """LoadGen Offline: all `n_requests` at t = 0, drained by the exact scheduler. The KV
    cache follows the catalog's (vLLM's) rule, or TensorRT-LLM's `kv_free_fraction` of free
    memory when given (``LLMIterationModel.kv_tokens_of_free_memory``)."""
    chips, limits, cost = _setup(chip, model, tp, dtype, kv_dtype, limits, ep, kv_free_fraction)
    _, isl, osl = _pool(n_requests, input_len, output_len, seed)
    sched = ReplicaScheduler(cost, limits)
    sched.add_many(np.zeros(n_requests, np.int64), isl, osl)
    sched.run_until(None)
    out = sched.outcome()
    done = ~out.rejected
    makespan_s = float(out.finish_ns[done].max()) / 1e9
    first, finish = out.first_token_ns[done], out.finish_ns[done]
    last_in_ns = int(out.start_ns[done].max())
    # past the start-up transient: a tenth of the queries admitted (the first batch, admitted
    # together, has long finished desynchronizing)
    fill_ns = int(np.quantile(out.start_ns[done], STEADY_FROM))
    steady = (
        (
            _tokens_by(last_in_ns, first, finish, osl[done])
            - _tokens_by(fill_ns, first, finish, osl[done])
        )
        / ((last_in_ns - fill_ns) / 1e9)
        if last_in_ns > fill_ns
        else float(osl[done].sum()) / makespan_s
    )
    return OfflineResult(
        float(osl[done].sum()) / makespan_s, chips, int(done.sum()), makespan_s, steady
    )


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
    ep: int = 1,
    min_duration_s: float = LOADGEN_MIN_DURATION_S,
    kv_free_fraction: float | None = None,
) -> ServerResult:
    """Search the replica's Server capacity (see module docstring); the KV cache as in
    :func:`llm_offline_replay`."""
    chips, limits, cost = _setup(chip, model, tp, dtype, kv_dtype, limits, ep, kv_free_fraction)
    cum_gaps, isl_all, osl_all = _pool(n_requests, input_len, output_len, seed)
    completed: dict[float, float] = {}  # rate -> LoadGen completed tokens/s of its replay

    def queries(rate: float) -> int:
        return min(n_requests, max(1, math.ceil(rate * min_duration_s)))

    def meets(rate: float) -> bool:
        n = queries(rate)
        arrival_ns = np.floor(cum_gaps[:n] / rate * 1e9).astype(np.int64)
        isl, osl = isl_all[:n], osl_all[:n]
        sched = ReplicaScheduler(cost, limits)
        sched.add_many(arrival_ns, isl, osl)
        sched.run_until(None)
        out = sched.outcome()
        if out.rejected.any():
            return False
        completed[rate] = float(osl.sum()) / (float(out.finish_ns.max()) / 1e9)
        ttft = (out.first_token_ns - arrival_ns) / 1e9
        tpot = tpot_ns(out, osl) / 1e9
        return loadgen_p99(ttft) <= ttft_p99_s and loadgen_p99(tpot) <= tpot_p99_s

    # Start from the offline-style guess: a replica emitting ~1,000 tokens/s per chip.
    guess = 1000.0 * chips / output_len.mean
    search = find_max_rate(
        lambda rates: [meets(r) for r in rates], guess, parallel=2, rel_tol=rel_tol
    )
    best, n = search.best_rate, queries(search.best_rate)
    scheduled = best * float(osl_all[:n].mean())
    return ServerResult(best, completed.get(best, 0.0), chips, search, scheduled, n)
