"""The `regions/` table: per region per interval offered/completed/goodput, latency, power.

Derived in `finalize()` from `requests/` and `devices/` rather than written by shards, so it
does not depend on how cells were spread over shards (a region split across shards still gets
exact interval quantiles). Offered counts arrivals in the interval; completed, goodput and the
latency quantiles count ok requests that *finished* in it; power is the energy of the region's
accelerators whose device interval starts in it, over the interval length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.results.groupstats import narrow
from mtia_cluster.results.schema import REGION_SCHEMA, dictionary
from mtia_cluster.units import NS_PER_S

QS = {
    "latency_p50_ns": 0.5,
    "latency_p90_ns": 0.9,
    "latency_p99_ns": 0.99,
    "latency_p99_9_ns": 0.999,
}


_NEEDED = ("arrival_ns", "finish_ns", "slo_ok", "latency_ns")
_VALUE_BITS = 40  # values below 2**40 (ns: about 18 minutes) take the one-key fast path


def sorted_by_bin_then_value(bins: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` ordered by (bin, value), int32 when every value fits. One in-place int64
    sort of ``bin << 40 | value`` when both fit (exact), else a two-key lexsort."""
    if len(values) == 0:
        return values
    fits = int(values.min()) >= 0 and int(values.max()) < (1 << _VALUE_BITS)
    if fits and int(bins.max()) < (1 << (63 - _VALUE_BITS)):
        key = bins.astype(np.int64)
        key <<= _VALUE_BITS
        key |= values
        key.sort()
        key &= (1 << _VALUE_BITS) - 1
        return narrow(key)
    return narrow(values[np.lexsort((values, bins))])


def binned_quantiles(
    bins: np.ndarray, values: np.ndarray, n_bins: int, qs: list[float]
) -> list[np.ndarray]:
    """Per-bin quantiles with numpy's linear interpolation (one sort); NaN for empty bins."""
    counts = np.bincount(bins, minlength=n_bins)
    return sorted_quantiles(sorted_by_bin_then_value(bins, values), counts, qs)


def sorted_quantiles(ordered: np.ndarray, counts: np.ndarray, qs: list[float]) -> list[np.ndarray]:
    """Per-bin quantiles of values already ordered by (bin, value), `counts` values per bin."""
    n_bins = len(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    base = starts[has]
    result = []
    for q in qs:
        out = np.full(n_bins, np.nan)
        pos = (counts[has] - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts[has] - 1)
        below = ordered[base + lo].astype(np.float64)  # only the values used: no copy of all
        out[has] = below + (ordered[base + hi].astype(np.float64) - below) * (pos - lo)
        result.append(out)
    return result


@dataclass
class RegionIntervals:
    """Mergeable per-interval statistics of a set of one region's requests.

    Counts per bin (arrays as long as the last non-empty bin + 1) and the ok requests'
    latencies ordered by (finish bin, latency), which is all the exact quantiles need."""

    offered: np.ndarray  # int64 arrivals per arrival bin
    completed: np.ndarray  # int64 ok requests per finish bin
    good: np.ndarray  # int64 ok requests within SLO per finish bin
    latency_sorted: np.ndarray  # ok latencies ordered by (finish bin, value); int32 if fit
    # bounded statistics (a shard writer's): counts only, `latency_sorted` empty; the exact
    # per-bin quantiles (one array per QS entry, NaN for no value) are filled in from one
    # read of the written rows (results/exact.py)
    bounded: bool = False
    quantiles: list[np.ndarray] | None = None


def region_intervals(t: pa.Table, interval_ns: int) -> RegionIntervals:
    """The interval statistics of requests `t` (one region; request columns)."""
    acc = IntervalsBuilder(interval_ns)
    acc.add(t)
    return acc.result()


class IntervalsBuilder:
    """Accumulates one region's RegionIntervals over pieces of its requests; the latencies
    are sorted once, in `result()`. Kept per ok request: its latency (int32 when it fits,
    possibly the very array the region's group statistics keep: `add_columns(latency=)`)
    and its finish bin (int16 up to 32,767 intervals, else int32). The counts per bin are
    summed as pieces come (one array each, as long as the latest bin so far: a piece's
    counts start at bin 0, so keeping every piece's would hold pieces x bins)."""

    def __init__(self, interval_ns: int, bounded: bool = False) -> None:
        self.interval_ns = interval_ns
        self.bounded = bounded  # counts only (RegionIntervals.bounded)
        self.counts = [np.zeros(0, dtype=np.int64) for _ in range(3)]  # offered, completed, good
        self.done: list[np.ndarray] = []
        self.latency: list[np.ndarray] = []

    def add(self, t: pa.Table) -> None:
        """Requests `t` (request columns) of the region."""
        ok = pc.equal(t["status"].cast(pa.string()), "ok").to_numpy(zero_copy_only=False)
        cols = {n: t[n].to_numpy(zero_copy_only=False) for n in _NEEDED}
        self._add(ok, cols)

    def add_columns(self, c: dict[str, np.ndarray], latency: np.ndarray | None = None) -> None:
        """Requests as groupstats columns (status as its index in STATUSES: ok is 0);
        `latency`: the ok rows' ``narrow(latency_ns)`` when the caller has it (kept, not
        copied)."""
        self._add(c["status"] == 0, c, latency)

    def _add(
        self, ok: np.ndarray, c: dict[str, np.ndarray], latency: np.ndarray | None = None
    ) -> None:
        arrival = c["arrival_ns"] // self.interval_ns
        done = c["finish_ns"][ok] // self.interval_ns
        good = c["slo_ok"][ok]
        pieces = (np.bincount(arrival), np.bincount(done), np.bincount(done[good]))
        self.counts = [padded_sum([c, p]) for c, p in zip(self.counts, pieces, strict=True)]
        if self.bounded:
            return
        self.done.append(narrow_bins(done))
        self.latency.append(narrow(c["latency_ns"][ok]) if latency is None else latency)

    def result(self) -> RegionIntervals:
        """The region's statistics; the pieces kept so far are released (call once)."""
        done = np.concatenate(self.done) if self.done else np.zeros(0, dtype=np.int64)
        self.done = []
        latency = np.concatenate(self.latency) if self.latency else np.zeros(0, dtype=np.int64)
        self.latency = []
        ordered = sorted_by_bin_then_value(done, latency)
        del done, latency
        return RegionIntervals(
            offered=self.counts[0],
            completed=self.counts[1],
            good=self.counts[2],
            latency_sorted=ordered,
            bounded=self.bounded,
        )


def narrow_bins(bins: np.ndarray) -> np.ndarray:
    """Interval bin numbers as int16 when every one fits (9 hours of 1-s intervals), else
    as `narrow` keeps them."""
    if len(bins) and int(bins.min()) >= 0 and int(bins.max()) <= np.iinfo(np.int16).max:
        return bins.astype(np.int16)
    return narrow(bins)


def padded_sum(arrays: list[np.ndarray]) -> np.ndarray:
    """Element-wise sum of per-bin count arrays of different lengths."""
    out = np.zeros(max((len(a) for a in arrays), default=0), dtype=np.int64)
    for a in arrays:
        out[: len(a)] += a
    return out


def merge_intervals(parts: list[RegionIntervals]) -> RegionIntervals:
    """One RegionIntervals for the union of disjoint request sets of one region."""
    if len(parts) == 1:
        return parts[0]
    completed = padded_sum([p.completed for p in parts])
    if any(p.bounded for p in parts):
        if not all(p.bounded for p in parts):
            raise ValueError("bounded and kept-value interval statistics do not merge")
        return RegionIntervals(
            offered=padded_sum([p.offered for p in parts]),
            completed=completed,
            good=padded_sum([p.good for p in parts]),
            latency_sorted=parts[0].latency_sorted,
            bounded=True,
        )
    bins = np.concatenate([np.repeat(np.arange(len(p.completed)), p.completed) for p in parts])
    values = np.concatenate([p.latency_sorted for p in parts])
    return RegionIntervals(
        offered=padded_sum([p.offered for p in parts]),
        completed=completed,
        good=padded_sum([p.good for p in parts]),
        latency_sorted=sorted_by_bin_then_value(bins, values),
    )


def _fit(counts: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    out[: len(counts)] = counts
    return out


def _interval_quantiles(ri: RegionIntervals, completed: np.ndarray) -> list[np.ndarray]:
    """Per bin latency quantiles over `len(completed)` bins (NaN: no ok request)."""
    if not ri.bounded:
        return sorted_quantiles(ri.latency_sorted, completed, list(QS.values()))
    if ri.quantiles is None:
        if completed.any():
            raise ValueError("bounded interval statistics without their resolved quantiles")
        return [np.full(len(completed), np.nan) for _ in QS]
    out = []
    for q in ri.quantiles:
        full = np.full(len(completed), np.nan)
        full[: len(q)] = q
        out.append(full)
    return out


def region_table(
    region: str, t: pa.Table, energy: dict[int, float], interval_ns: int, span_ns: int
) -> pa.Table:
    """All interval rows of one region from its requests `t` and energy per bin."""
    return intervals_table(region, region_intervals(t, interval_ns), energy, interval_ns, span_ns)


def intervals_table(
    region: str, ri: RegionIntervals, energy: dict[int, float], interval_ns: int, span_ns: int
) -> pa.Table:
    """All interval rows of one region from its interval statistics and energy per bin."""
    last = [len(ri.offered), len(ri.completed)] + [b + 1 for b in energy]
    n = max([-(-span_ns // interval_ns), *last])
    seconds = interval_ns / NS_PER_S
    e = np.zeros(n)
    for b, joules in energy.items():
        e[b] += joules
    completed = _fit(ri.completed, n)
    cols: dict[str, object] = {
        "region": dictionary([region], pa.array(np.zeros(n, dtype=np.int32))),
        "interval_start_ns": np.arange(n, dtype=np.int64) * interval_ns,
        "interval_end_ns": (np.arange(n, dtype=np.int64) + 1) * interval_ns,
        "offered": _fit(ri.offered, n),
        "completed": completed,
        "good": _fit(ri.good, n),
    }
    cols["offered_per_s"] = cols["offered"] / seconds  # type: ignore[operator]
    cols["completed_per_s"] = cols["completed"] / seconds  # type: ignore[operator]
    cols["goodput_per_s"] = cols["good"] / seconds  # type: ignore[operator]
    quantiles = _interval_quantiles(ri, completed)
    for name, vals in zip(QS, quantiles, strict=True):
        cols[name] = pa.array(vals, mask=np.isnan(vals))
    cols["energy_j"] = e
    cols["power_w"] = e / seconds
    return pa.table(cols, schema=REGION_SCHEMA)
