"""Exact quantiles of huge groups in bounded memory: a histogram pass, then a refining pass.

Pass 1 counts each value into a log-linear bucket (:func:`bucket_of`: width 1 below 128, then
128 buckets per power of two, i.e. under 0.8% relative width) per group. The counts locate the
bucket and the rank inside it of every order statistic a quantile needs. Pass 2 collects only
the values that fall in those buckets (:class:`ValueCollector`, compacted to distinct values
with counts), so memory is bounded by the occupied buckets plus the values of a few narrow
buckets, not by the group size. The result is numpy's default (linear interpolation) quantile,
bit for bit, which is what `summary.json` uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

SUB_BUCKETS = 128  # buckets per power of two above SUB_BUCKETS
_LINEAR_BITS = 8  # frexp exponent of SUB_BUCKETS (128 = 0.5 * 2**8)
N_BUCKETS = (64 - _LINEAR_BITS) * SUB_BUCKETS + 2 * SUB_BUCKETS  # covers values up to 2**64
_COMPACT_MIN = 1 << 20


def bucket_of(values: np.ndarray) -> np.ndarray:
    """Monotone bucket index (int64) of non-negative values: exact below 128, then log-linear."""
    v = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    mantissa, exponent = np.frexp(v)
    log_part = (exponent.astype(np.int64) - _LINEAR_BITS) * SUB_BUCKETS + np.floor(
        mantissa * (2 * SUB_BUCKETS)
    ).astype(np.int64)
    return np.where(v < SUB_BUCKETS, np.floor(v).astype(np.int64), log_part)


def bucket_lower_bound(bucket: np.ndarray) -> np.ndarray:
    """Smallest value of each bucket (inverse of :func:`bucket_of` at bucket starts)."""
    b = np.asarray(bucket, dtype=np.int64)
    octave = b // SUB_BUCKETS - 1
    within = b % SUB_BUCKETS + SUB_BUCKETS
    logv = np.ldexp(within.astype(np.float64), np.maximum(octave, 0).astype(np.int32))
    return np.where(b < 2 * SUB_BUCKETS, b.astype(np.float64), logv)


_DENSE_KEYS = 1 << 20


class SparseCounts:
    """Counts per int64 key, accumulated batch by batch, stored sparsely (sorted when read).

    When the key space is known and small (`key_space` <= 2**20) a dense array is used instead:
    the same result without sorting every batch.
    """

    def __init__(self, key_space: int | None = None) -> None:
        dense = key_space is not None and key_space <= _DENSE_KEYS
        self._dense = np.zeros(key_space or 0, dtype=np.int64) if dense else None
        self._keys = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_len = 0

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Add one count per key (or the given counts)."""
        if len(keys) == 0:
            return
        if self._dense is not None:
            self._dense += np.bincount(keys, weights=counts, minlength=len(self._dense)).astype(
                np.int64
            )
            return
        k, c = np.unique(keys, return_counts=True) if counts is None else (keys, counts)
        self._pending.append((k.astype(np.int64), c.astype(np.int64)))
        self._pending_len += len(k)
        if self._pending_len > max(_COMPACT_MIN, 2 * len(self._keys)):
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._pending, self._pending_len = [], 0
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._counts = np.bincount(inverse, weights=counts, minlength=len(self._keys)).astype(
            np.int64
        )

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted distinct keys, their counts)."""
        if self._dense is not None:
            keys = np.flatnonzero(self._dense)
            return keys.astype(np.int64), self._dense[keys]
        self._compact()
        return self._keys, self._counts


def rank_targets(
    hist: SparseCounts, buckets: int, qs: Mapping[str, float]
) -> dict[int, list[tuple[str, int, int, float]]]:
    """Per group: for each quantile, (name, hist key of rank lo, offset in that bucket, frac).

    Groups are ``key // buckets``. Only ``lo = floor((n - 1) * q)`` and ``lo + 1`` are ever
    needed (numpy's linear interpolation); both are returned as targets by the caller.
    """
    keys, counts = hist.items()
    out: dict[int, list[tuple[str, int, int, float]]] = {}
    if len(keys) == 0:
        return out
    groups = keys // buckets
    bounds = np.flatnonzero(np.diff(groups)) + 1
    for start, stop in zip(
        np.concatenate([[0], bounds]), np.concatenate([bounds, [len(keys)]]), strict=True
    ):
        out[int(groups[start])] = group_targets(keys[start:stop], counts[start:stop], qs)
    return out


def group_targets(
    keys: np.ndarray, counts: np.ndarray, qs: Mapping[str, float]
) -> list[tuple[str, int, int, float]]:
    """One group's targets: for each quantile, (name, key, offset in that key, fraction)
    of ranks ``lo = floor((n - 1) * q)`` and ``min(lo + 1, n - 1)``, from the group's
    sorted occupied keys and their counts (n = their sum > 0)."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    targets = []
    for name, q in qs.items():
        pos = (n - 1) * q
        lo = int(np.floor(pos))
        for rank in (lo, min(lo + 1, n - 1)):
            j = int(np.searchsorted(cum, rank, side="right"))
            offset = rank - (int(cum[j - 1]) if j else 0)
            targets.append((name, int(keys[j]), offset, pos - lo))
    return targets


class ValueCollector:
    """The distinct values (with counts) that fall into a set of target histogram keys."""

    def __init__(self, target_keys: np.ndarray) -> None:
        self.targets = np.unique(np.asarray(target_keys, dtype=np.int64))
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._size = 0
        self._compacted = 0

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Keep the (key, value) pairs whose key is a target."""
        if len(self.targets) == 0 or len(keys) == 0:
            return
        mask = np.isin(keys, self.targets)
        if not mask.any():
            return
        self._parts.append(_distinct(keys[mask], values[mask].astype(np.float64), None))
        self._size += int(mask.sum())
        if self._size > max(_COMPACT_MIN, 2 * self._compacted):
            self._parts = [self._merge()]
            self._compacted = self._size = len(self._parts[0][0])

    def _merge(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, np.empty(0), empty
        keys, values, counts = (np.concatenate(x) for x in zip(*self._parts, strict=True))
        return _distinct(keys, values, counts)

    def value_at(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per target key: (sorted distinct values, cumulative counts)."""
        keys, values, counts = self._merge()
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        bounds = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64)
        stops = np.concatenate([bounds, [len(keys)]]).astype(np.int64)
        for a, b in zip(starts, stops, strict=True):
            if b > a:
                out[int(keys[a])] = (values[a:b], np.cumsum(counts[a:b]))
        return out


def _distinct(
    keys: np.ndarray, values: np.ndarray, counts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, value) pairs sorted and made distinct, with their multiplicities."""
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    c = np.ones(len(k), dtype=np.int64) if counts is None else counts[order]
    if len(k) == 0:
        return k, v, c
    new = np.concatenate([[True], (k[1:] != k[:-1]) | (v[1:] != v[:-1])])
    idx = np.flatnonzero(new)
    return k[idx], v[idx], np.add.reduceat(c, idx)


def lerp(a: float, b: float, t: float) -> float:
    """numpy's quantile interpolation between neighbours (same rounding as np.quantile)."""
    return float(np.quantile(np.array([a, b], dtype=np.float64), t))


def resolve(
    targets: dict[int, list[tuple[str, int, int, float]]],
    found: dict[int, tuple[np.ndarray, np.ndarray]],
) -> dict[int, dict[str, float]]:
    """Per group, quantile name -> exact value, from the collected bucket contents."""
    out: dict[int, dict[str, float]] = {}
    for group, items in targets.items():
        vals: dict[str, list[float]] = {}
        fracs: dict[str, float] = {}
        for name, key, offset, frac in items:
            values, cum = found[key]
            vals.setdefault(name, []).append(float(values[np.searchsorted(cum, offset, "right")]))
            fracs[name] = frac
        out[group] = {name: lerp(v[0], v[1], fracs[name]) for name, v in vals.items()}
    return out


@dataclass
class ValueHist:
    """One metric of a set of requests without its values: counts per bucket (`bucket_of`;
    the array stops at the last occupied bucket), how many values, their sum (integer
    values; 0 for floats, whose sum no figure uses) and their max. Mergeable: `merged`
    adds. The exact quantiles come from the counts and one collecting read of the values
    (results/exact.py)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n: int = 0
    total: int = 0
    max: int | float | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> ValueHist:
        """The histogram of `values` (non-negative in practice: negatives count in bucket 0)."""
        if len(values) == 0:
            return cls()
        whole = values.dtype.kind in "iu"
        top = values.max()
        return cls(
            counts=np.bincount(bucket_of(values)).astype(np.int64),
            n=len(values),
            total=int(values.sum()) if whole else 0,
            max=int(top) if whole else float(top),
        )

    def merged(self, other: ValueHist) -> ValueHist:
        """The histogram of the union of two disjoint sets of values."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        counts = np.zeros(max(len(self.counts), len(other.counts)), dtype=np.int64)
        counts[: len(self.counts)] += self.counts
        counts[: len(other.counts)] += other.counts
        assert self.max is not None and other.max is not None
        return ValueHist(
            counts, self.n + other.n, self.total + other.total, max(self.max, other.max)
        )
