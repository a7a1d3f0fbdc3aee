"""Streaming summary of a trace: counts, span, rates, burstiness, mixes and size quantiles.

One pass over the batches, never the whole file: inter-arrival sums carry across batches,
per-minute counts and per-service/region counts are bincounts, and size quantiles are exact,
computed from sparse value histograms (sorted distinct values and their counts), so memory
follows the rows, never the largest value or the span (trace limits bound the span).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mtia_cluster.traces.io import read_metadata, read_trace_batches, read_trace_schema
from mtia_cluster.units import NS_PER_MIN, NS_PER_S

QUANTILES = (0.5, 0.9, 0.99)
SIZE_COLUMNS = ("items", "input_tokens", "output_tokens")


class _Hist:
    """Exact distribution of non-negative integers as sorted (value, count) pairs: memory
    grows with the number of distinct values (at most the rows), never with the largest."""

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.total = 0.0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        v, c = np.unique(values.astype(np.int64, copy=False), return_counts=True)
        merged, where = np.unique(np.concatenate([self.values, v]), return_inverse=True)
        weights = np.concatenate([self.counts, c]).astype(np.float64)
        self.values = merged
        self.counts = np.bincount(where, weights=weights, minlength=len(merged)).astype(np.int64)
        self.total += float(values.sum(dtype=np.float64))

    def dense(self) -> np.ndarray:
        """Counts of 0, 1, ..., max (for bounded values: minutes of a checked span)."""
        out = np.zeros(int(self.values[-1]) + 1 if len(self.values) else 0, dtype=np.int64)
        out[self.values] = self.counts
        return out

    def summary(self) -> dict[str, Any] | None:
        n = int(self.counts.sum())
        if n == 0:
            return None
        cum = np.cumsum(self.counts)
        out: dict[str, Any] = {
            "count": n,
            "mean": self.total / n,
            "min": int(self.values[0]),
        }
        for q in QUANTILES:
            out[f"p{round(q * 100):d}"] = int(self.values[np.searchsorted(cum, math.ceil(q * n))])
        out["max"] = int(self.values[-1])
        return out


class _Labels:
    """Counts of a dictionary column across batches whose dictionaries may differ."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.nulls = 0  # rows without a label (an optional column's null)

    def add(self, col: pa.Array) -> None:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        self.nulls += col.null_count
        idx = col.indices.drop_null().to_numpy(zero_copy_only=False)
        counts = np.bincount(idx, minlength=len(col.dictionary))
        for name, c in zip(col.dictionary.to_pylist(), counts.tolist(), strict=True):
            if c:
                self.counts[name] = self.counts.get(name, 0) + c

    def shares(self, total: int, span_s: float) -> dict[str, dict[str, float | None]]:
        """rows, share of all rows and mean rate per label."""
        return {
            k: {"rows": v, "share": v / total, "rate_per_s": v / span_s if span_s > 0 else None}
            for k, v in sorted(self.counts.items())
        }


def inspect_trace(
    path: str | Path, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Summarise the trace at `path` in one streaming pass (validating it as it goes)."""
    meta = read_metadata(path)
    rows, first_ns, last_ns = 0, None, 0
    iat_sum, iat_sumsq = 0.0, 0.0
    minutes = _Hist()  # rows per minute index (sparse: memory follows rows, not the span)
    services, regions = _Labels(), _Labels()
    hists = {c: _Hist() for c in SIZE_COLUMNS}
    failed = 0
    wanted = ["region", *SIZE_COLUMNS, "failed"]
    present = [c for c in wanted if c in read_trace_schema(path).names]
    for batch in read_trace_batches(path, columns=present, batch_rows=1 << 20):
        t = batch.column("arrival_ns").to_numpy()
        if first_ns is None:
            first_ns = int(t[0])
            prev = t[0]
        gaps = np.diff(t, prepend=prev).astype(np.float64)
        iat_sum += float(gaps.sum())
        iat_sumsq += float(np.dot(gaps, gaps))
        prev = t[-1]
        last_ns = int(t[-1])
        minutes.add((t - first_ns) // NS_PER_MIN)
        services.add(batch.column("service"))
        names = batch.schema.names
        if "region" in names:
            regions.add(batch.column("region"))
        for c in SIZE_COLUMNS:
            if c in names:
                col = batch.column(c)
                hists[c].add(col.drop_null().to_numpy())
        if "failed" in names:
            failed += int(
                np.count_nonzero(
                    batch.column("failed").fill_null(False).to_numpy(zero_copy_only=False)
                )
            )
        rows += batch.num_rows
        if progress is not None:
            progress(batch.num_rows)
    return _summary(
        meta,
        rows,
        first_ns or 0,
        last_ns,
        iat_sum,
        iat_sumsq,
        minutes.dense(),
        services,
        regions,
        hists,
        failed,
    )


def _summary(
    meta: dict[str, Any],
    rows: int,
    first_ns: int,
    last_ns: int,
    iat_sum: float,
    iat_sumsq: float,
    minute: np.ndarray,
    services: _Labels,
    regions: _Labels,
    hists: dict[str, _Hist],
    failed: int,
) -> dict[str, Any]:
    span_s = (last_ns - first_ns) / NS_PER_S
    n_gaps = max(rows - 1, 0)
    mean_gap = iat_sum / n_gaps if n_gaps else float("nan")
    var_gap = iat_sumsq / n_gaps - mean_gap * mean_gap if n_gaps else float("nan")
    iat_cv = math.sqrt(max(var_gap, 0.0)) / mean_gap if n_gaps and mean_gap > 0 else None
    full = minute[:-1] if len(minute) > 1 else minute  # the last minute is partial
    per_min = full.astype(np.float64)
    out: dict[str, Any] = {
        "rows": rows,
        "span_s": span_s,
        "rate_per_s": rows / span_s if span_s > 0 else None,
        "iat_cv": iat_cv,
        "rate_per_min": {
            "mean": float(per_min.mean()),
            "min": int(per_min.min()),
            "p50": float(np.median(per_min)),
            "max": int(per_min.max()),
        },
        "peak_to_mean": float(per_min.max() / per_min.mean()) if per_min.mean() > 0 else None,
        "services": services.shares(rows, span_s),
        "regions": regions.shares(rows, span_s) if regions.counts else None,
        "rows_without_region": regions.nulls,
        "sizes": {c: h.summary() for c, h in hists.items() if h.summary() is not None},
        "per_minute_counts": minute.tolist(),
        "metadata": {k: meta.get(k) for k in ("source", "licence", "generator")},
    }
    if failed:
        out["failed"] = failed
    return out
