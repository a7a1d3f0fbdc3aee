"""Size limits of a trace file, checked when it is opened (before any row is read).

The span (last minus first arrival) and the largest `items`, `input_tokens` and
`output_tokens` come from the Parquet row-group statistics (every writer we know records
them), or, for a row group without statistics, from reading that one column chunk. Memory is
one row group's column at most, whatever the values. The limits themselves are
:class:`mtia_cluster.config.limits.Limits` (docs/limits.md).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtia_cluster.config.limits import Limits, limit_error
from mtia_cluster.traces.schema import INT32_MAX
from mtia_cluster.units import NS_PER_S

# column -> the limit on its largest value
SIZE_LIMITS = {
    "items": "items_per_request",
    "input_tokens": "tokens_per_request",
    "output_tokens": "tokens_per_request",
}


def column_range(pf: pq.ParquetFile, name: str) -> tuple[float, float] | None:
    """(min, max) of a numeric column over the file, nulls and NaN ignored; None if empty."""
    meta = pf.metadata
    names = [meta.schema.column(j).path for j in range(meta.num_columns)]
    if name not in names:
        return None
    j = names.index(name)
    lows: list[float] = []
    highs: list[float] = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(j).statistics
        if stats is not None and stats.has_min_max:
            lo, hi = stats.min, stats.max
        else:  # no statistics: read this row group's column chunk only
            mm = pc.min_max(pf.read_row_group(i, columns=[name]).column(0)).as_py()
            lo, hi = mm["min"], mm["max"]
        if lo is not None and hi is not None and lo == lo and hi == hi:  # not NaN
            lows.append(lo)
            highs.append(hi)
    return (min(lows), max(highs)) if lows else None


def trace_span_ns(pf: pq.ParquetFile) -> int:
    """Last minus first arrival (0 for a trace without rows)."""
    rng = column_range(pf, "arrival_ns")
    return int(rng[1]) - int(rng[0]) if rng is not None else 0


def check_trace_limits(pf: pq.ParquetFile, path: str | Path, limits: Limits | None = None) -> None:
    """Refuse a trace whose span or per-request sizes exceed the limits (one line, exit 2)."""
    lim = limits or Limits.from_env()
    span_ns = trace_span_ns(pf)
    if span_ns > lim.trace_span_s * NS_PER_S:
        raise limit_error(
            "trace span (first to last arrival)",
            span_ns / NS_PER_S,
            "trace_span_s",
            lim.trace_span_s,
            path,
            "arrival_ns",
            " s",
        )
    for column, name in SIZE_LIMITS.items():
        rng = column_range(pf, column)
        limit = getattr(lim, name)
        # a value outside int32 is left to the row-level format check (it names the row)
        if rng is not None and limit < rng[1] <= INT32_MAX:
            raise limit_error(f"largest {column}", rng[1], name, limit, path, column)


def check_generation(
    requests: float, duration_s: float | None, file: str | Path | None, limits: Limits | None = None
) -> None:
    """A trace spec's expected rows (rate x duration, or `requests`) and its duration, before
    anything is drawn: generation holds the whole table in memory."""
    lim = limits or Limits.from_env()
    if duration_s is not None and duration_s > lim.trace_span_s:
        raise limit_error(
            "duration", duration_s, "trace_span_s", lim.trace_span_s, file, "duration_s", " s"
        )
    if requests > lim.generated_requests:
        raise limit_error(
            "expected requests (rate_per_s x duration_s, or requests)",
            requests,
            "generated_requests",
            lim.generated_requests,
            file,
            "duration_s" if duration_s is not None else "requests",
        )
