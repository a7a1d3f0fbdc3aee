"""What the streaming passes (passes.py) carry: one record batch as numpy columns and one
level's accumulators, with the counts and metrics they keep.

Apart from the passes so that the quantile refinement (refine.py), which the passes call,
can read them without importing the passes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.results.analysis.groups import Level
from mtia_cluster.results.hist import N_BUCKETS, SparseCounts, bucket_of
from mtia_cluster.results.summary import QUANTILES, TOKEN_QUANTILES

COUNTS = ("offered", "completed", "good", "dropped", "rejected", "failed", "items", "tokens")
LLM_COUNTS = ("input_tokens", "cached_tokens", "preemptions", "kv_failures")  # as groupstats
METRICS = {"latency": QUANTILES, "ttft": TOKEN_QUANTILES, "tpot": TOKEN_QUANTILES}


@dataclass
class LevelAcc:
    """Accumulators of one level: flat arrays indexed by group id, histograms per metric."""

    level: Level
    services: int
    judged: bool
    regions: int = 1
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    latency_sum: np.ndarray = field(default_factory=lambda: np.empty(0))
    latency_max: np.ndarray = field(default_factory=lambda: np.empty(0))
    # per (group, region, service): requests, over-bound counts per metric, last arrival
    verdict: dict[str, np.ndarray] = field(default_factory=dict)
    hist: dict[str, SparseCounts] = field(default_factory=dict)
    quantiles: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        g = self.level.groups
        self.counts = {k: np.zeros(g, dtype=np.int64) for k in (*COUNTS, *LLM_COUNTS)}
        self.latency_sum = np.zeros(g, dtype=np.int64)
        self.latency_max = np.full(g, -1, dtype=np.int64)
        gs = g * self.regions * self.services if self.judged else 0
        self.verdict = {k: np.zeros(gs, dtype=np.int64) for k in ("n", *METRICS, "last")}
        self.verdict["last"][:] = -1
        self.hist = {m: SparseCounts(g * N_BUCKETS) for m in METRICS}


@dataclass
class Batch:
    """One record batch as numpy columns, with its per-dimension codes and windows."""

    codes: dict[str, np.ndarray]
    status: np.ndarray
    ok: np.ndarray
    arrival_ns: np.ndarray
    finish_ns: np.ndarray
    first_token_ns: np.ndarray
    output_tokens: np.ndarray
    items: np.ndarray
    slo_ok: np.ndarray
    win_arrival: np.ndarray
    llm: dict[str, np.ndarray]  # input_tokens, cached_tokens, preemptions, accelerator_id
    win_finish: np.ndarray
    cache: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str, llm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row mask, values, buckets) of latency, TTFT or TPOT (as summary.py defines them).

        Computed once per batch and shared by every level.
        """
        got = self.cache.get(name)
        if got is None:
            mask, values = self._metric(name, llm)
            got = self.cache[name] = (mask, values, bucket_of(values))
        return got

    def _metric(self, name: str, llm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if name == "latency":
            return self.ok, (self.finish_ns - self.arrival_ns)[self.ok]
        is_llm = self.ok & llm[self.codes["service"]]
        if name == "ttft":
            return is_llm, (self.first_token_ns - self.arrival_ns)[is_llm]
        steps = self.output_tokens - 1
        multi = is_llm & (steps > 0)
        return multi, (self.finish_ns - self.first_token_ns)[multi] / steps[multi]
