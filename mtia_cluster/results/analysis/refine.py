"""The passes after the histogram: exact order statistics with memory bounded per target.

A quantile needs the values at two ranks; pass 1 (passes.first_pass) located the histogram
bucket of each. When such a bucket holds more than `REFINE_LIMIT` requests (a group of tens of
millions), one extra pass splits it into `SUB_BINS` equal sub-ranges and counts them, so only
the sub-range holding the rank is collected. The final pass collects the distinct values of
the chosen (sub-)buckets (hist.ValueCollector) and the quantiles are resolved exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mtia_cluster.results.hist import (
    N_BUCKETS,
    SparseCounts,
    ValueCollector,
    bucket_lower_bound,
    rank_targets,
    resolve,
)

if TYPE_CHECKING:
    from mtia_cluster.results.analysis.accumulators import Batch, LevelAcc

REFINE_LIMIT = 1 << 16
SUB_BINS = 4096
_SUB_BASE = 1 << 42  # collect keys of sub-bins live above every histogram key

Target = tuple[str, int, int, float]  # quantile name, key, rank offset within key, fraction


@dataclass
class Plan:
    """One level's metric: its quantile targets, the buckets to refine, the collector."""

    acc: LevelAcc
    metric: str
    targets: dict[int, list[Target]]
    big: np.ndarray
    sub: SparseCounts = field(default_factory=SparseCounts)

    def rows(self, b: Batch, llm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(value, collect key) of the batch rows that have this metric.

        The collect key is the histogram key, or for a value in a refined bucket its sub-bin.
        """
        mask, values, buckets = b.metric(self.metric, llm)
        keys = self.acc.level.gid(b.codes, b.win_finish)[mask] * N_BUCKETS + buckets
        collect = keys
        if len(self.big):
            pos = np.searchsorted(self.big, keys)
            hit = self.big[np.minimum(pos, len(self.big) - 1)] == keys
            collect = keys.copy()
            sub = sub_bin(values[hit], buckets[hit])
            collect[hit] = _SUB_BASE + pos[hit] * SUB_BINS + sub
        return values, collect


def sub_bin(values: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Monotone index in [0, SUB_BINS) of each value within its histogram bucket."""
    lo = bucket_lower_bound(buckets)
    width = bucket_lower_bound(buckets + 1) - lo
    sub = np.floor((values.astype(np.float64) - lo) * SUB_BINS / width).astype(np.int64)
    return np.clip(sub, 0, SUB_BINS - 1)


def make_plans(accs: list[LevelAcc], metrics: dict[str, dict[str, float]]) -> list[Plan]:
    """Targets of every level and metric, with the crowded buckets marked for refinement."""
    plans = []
    for acc in accs:
        for m, qs in metrics.items():
            targets = rank_targets(acc.hist[m], N_BUCKETS, qs)
            keys, counts = acc.hist[m].items()
            used = np.unique([t[1] for ts in targets.values() for t in ts]).astype(np.int64)
            crowded = counts[np.searchsorted(keys, used)] > REFINE_LIMIT if len(used) else used
            plans.append(Plan(acc, m, targets, used[crowded] if len(used) else used))
    return plans


def _retarget(plan: Plan) -> None:
    """Point targets in refined buckets at the sub-bin that holds their rank."""
    keys, counts = plan.sub.items()
    for group, items in plan.targets.items():
        new = []
        for name, key, offset, frac in items:
            i = int(np.searchsorted(plan.big, key))
            if i < len(plan.big) and plan.big[i] == key:
                lo, hi = np.searchsorted(keys, [i * SUB_BINS, (i + 1) * SUB_BINS])
                cum = np.cumsum(counts[lo:hi])
                j = int(np.searchsorted(cum, offset, side="right"))
                offset -= int(cum[j - 1]) if j else 0
                key = _SUB_BASE + int(keys[lo + j])
            new.append((name, key, offset, frac))
        plan.targets[group] = new


def exact_quantiles(
    plans: list[Plan], stream: Callable[[], Iterator[Batch]], llm: np.ndarray
) -> None:
    """Run the refine pass (if any bucket is crowded) and the collect pass; fill quantiles."""
    live = [p for p in plans if p.targets]
    if any(len(p.big) for p in live):
        for b in stream():
            for p in live:
                if len(p.big):
                    _, collect = p.rows(b, llm)
                    refined = collect >= _SUB_BASE
                    p.sub.add(collect[refined] - _SUB_BASE)
        for p in live:
            if len(p.big):
                _retarget(p)
    collectors = {
        id(p): ValueCollector(np.array([t[1] for ts in p.targets.values() for t in ts]))
        for p in live
    }
    if live:
        for b in stream():
            for p in live:
                values, collect = p.rows(b, llm)
                collectors[id(p)].add(collect, values)
    for p in plans:
        found = collectors[id(p)].value_at() if id(p) in collectors else {}
        p.acc.quantiles[p.metric] = resolve(p.targets, found)
