"""Summary statistics computed by the shards as they write, merged by the coordinator.

A shard already holds every request it writes, so it accumulates, per (region, service), the
mergeable :class:`~mtia_cluster.results.groupstats.Partial` and, per region, the
:class:`~mtia_cluster.results.intervals.RegionIntervals` of the `regions/` table, from exactly
the rows it writes (the request file columns). At close it returns a :class:`ShardStats`;
`finalize()` merges the shards' stats and writes `summary.json` and `regions/` without reading
the requests back. Merging is exact for any split of a region over shards (counts add, the
kept latency values are concatenated and the quantiles computed over the union), so the same
code serves region, rack and host placements and the single-process run.

Two kinds: a shard writer's builder is ``bounded`` (histograms of the kept metrics and the
interval counts, no values: memory follows the fleet and the intervals, not the requests;
finalize gets the exact quantiles from one collecting read of the written rows,
results/exact.py); an in-process summary (`results.run.summarize`), which has no written
rows, keeps the values.

request_id uniqueness: each shard checks its own ids at close (one sort of its ids); the
coordinator checks that the shards together wrote as many rows as the trace has (the trace
check already refused duplicate ids in the trace, and every row goes to exactly one shard).
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.errors import UserError
from mtia_cluster.results.devstats import DeviceStats, merge_device_stats
from mtia_cluster.results.groupstats import (
    Partial,
    codes,
    fast_columns,
    merge,
    narrow,
    partial_of_columns,
    spilled_from,
)
from mtia_cluster.results.intervals import IntervalsBuilder, RegionIntervals, merge_intervals
from mtia_cluster.slo import ServiceSLO

PIECE_ROWS = 65_536  # rows of one region processed at once


@dataclass
class ShardStats:
    """What one shard (or a merge of several) contributes to the summary and `regions/`."""

    rows: int = 0
    max_ns: int = 0  # latest arrival_ns or finish_ns written (the span when none is given)
    groups: dict[tuple[str, str], Partial] = field(default_factory=dict)
    intervals: dict[str, RegionIntervals] = field(default_factory=dict)
    devices: DeviceStats | None = None  # totals of the device rows written (devstats.py)

    @property
    def bounded(self) -> bool:
        """Histograms and counts only (a shard writer's): the exact quantiles need one read
        of the written rows (results/exact.py)."""
        return any(p.hists is not None for p in self.groups.values()) or any(
            i.bounded for i in self.intervals.values()
        )


class StatsBuilder:
    """Accumulates a ShardStats from the request rows a shard writes, piece by piece."""

    def __init__(
        self,
        services: Sequence[str],
        slos: Mapping[str, ServiceSLO],
        interval_ns: int,
        check_unique: bool = True,
        bounded: bool = False,
    ) -> None:
        self.services = tuple(services)
        self.bounded = bounded  # histograms, not values: see the module doc
        self.slos = slos
        self.interval_ns = interval_ns
        self.check_unique = check_unique
        self.rows = 0
        self.max_ns = 0
        self._groups: dict[tuple[str, str], list[Partial]] = {}
        self._intervals: dict[str, IntervalsBuilder] = {}
        self._ids = SeenIds()
        self._pending: dict[str, list[pa.Table]] = {}

    def add(self, region: str, table: pa.Table) -> None:
        """Rows of one region (request file columns: service, status, times, ...); buffered
        up to PIECE_ROWS per region (per-piece costs dominate small pieces)."""
        if table.num_rows == 0:
            return
        pending = self._pending.setdefault(region, [])
        pending.append(table)
        if sum(t.num_rows for t in pending) >= PIECE_ROWS:
            self._add(region, pa.concat_tables(self._pending.pop(region)))

    def flush(self) -> None:
        """Take the statistics of every buffered row now."""
        for region in list(self._pending):
            self._add(region, pa.concat_tables(self._pending.pop(region)))

    def _add(self, region: str, table: pa.Table) -> None:
        self.rows += table.num_rows
        for col in ("arrival_ns", "finish_ns"):
            self.max_ns = max(self.max_ns, int(pc.max(table[col]).as_py()))
        c = fast_columns(table)
        service = codes(table["service"], self.services)
        counts = np.bincount(service + 1, minlength=len(self.services) + 1)
        if counts[0]:
            raise UserError("unknown service in written rows", field="service")
        present = np.flatnonzero(counts[1:])
        # the ok rows' latencies, kept once: the region's intervals and, when the piece is of
        # one service, its group share this array (finalize keeps one sorted copy per region)
        kept = None if self.bounded else narrow(c["latency_ns"][c["status"] == 0])
        spill = _spilled_by_service(table)
        grouped, starts = c, np.concatenate([[0], np.cumsum(counts[1:])])
        if len(present) > 1:  # one gather per column, then a slice per service
            order = np.argsort(service, kind="stable")
            grouped = {k: v[order] for k, v in c.items()}
        for code in present:
            lo, hi = (0, len(service)) if len(present) == 1 else (starts[code], starts[code + 1])
            mine = {k: v[lo:hi] for k, v in grouped.items()}
            name = self.services[code]
            shared = kept if len(present) == 1 else None
            piece = partial_of_columns(
                mine, self.slos.get(name), True, latency=shared, bounded=self.bounded
            )
            piece.spilled_from = spill.get(name, {})
            self._keep((region, name), piece)
        if region not in self._intervals:
            self._intervals[region] = IntervalsBuilder(self.interval_ns, self.bounded)
        self._intervals[region].add_columns(c, latency=kept)
        if self.check_unique:
            self._ids.add(table["request_id"].to_numpy())

    def _keep(self, key: tuple[str, str], piece: Partial) -> None:
        """Add one piece's partial to its group: bounded, merged at once (a few histograms
        per group); else kept as a piece (its values merge once, at `result`)."""
        pieces = self._groups.setdefault(key, [])
        if self.bounded and pieces:
            pieces[0] = merge([pieces[0], piece])
        else:
            pieces.append(piece)

    def result(self) -> ShardStats:
        """The merged statistics; raises UserError when a request_id was written twice.
        Call once: the kept values move into the result region by region (each region's
        pieces are released as its sorted values are made), so finalize holds the values
        about once, not pieces and merged copies side by side."""
        self.flush()
        self._ids.check()
        groups: dict[tuple[str, str], Partial] = {}
        intervals: dict[str, RegionIntervals] = {}
        services_in = Counter(region for region, _ in self._groups)
        for key in list(self._groups):
            region = key[0]
            if region not in intervals:
                intervals[region] = self._intervals.pop(region).result()
            p = merge(self._groups.pop(key))
            if services_in[region] == 1 and not self.bounded:
                p = _sharing(p, intervals[region])
            groups[key] = _compact(p)
            return_freed_memory()  # the region's pieces: holes in the heap until returned
        for region in list(self._intervals):
            intervals[region] = self._intervals.pop(region).result()
        return ShardStats(self.rows, self.max_ns, groups, intervals)


def return_freed_memory() -> None:
    """Give the pages of freed heap memory back to the OS (glibc ``malloc_trim``; nothing
    elsewhere). The kept values arrive as many small arrays (one per written piece, on the
    heap); once a region's are merged into one large array (its own mapping) and freed,
    their holes, scattered between other regions' pieces that are still alive, stay
    resident: at 30 M requests ~6 bytes per request on top of the merged copies."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


def _sharing(p: Partial, ri: RegionIntervals) -> Partial:
    """The only group of its region keeps the region's sorted ok latencies as its values
    (the same requests; the quantiles do not depend on the order): one array, no copy."""
    if int(p.counts[0]) == len(ri.latency_sorted):
        p.latency = [ri.latency_sorted]
    return p


def _spilled_by_service(table: pa.Table) -> dict[str, dict[str, int]]:
    """Service -> home region -> requests of `table` spilled here (usually none: one
    numeric filter)."""
    if "spill_rtt_ns" not in table.column_names:
        return {}
    moved = table.filter(pc.greater(table["spill_rtt_ns"], 0))
    if moved.num_rows == 0:
        return {}
    svc = moved["service"].cast(pa.string())
    return {
        name: spilled_from(moved.filter(pc.equal(svc, name))) for name in pc.unique(svc).to_pylist()
    }


def _compact(p: Partial) -> Partial:
    """One array per kept metric (fewer, larger objects to ship through Ray)."""
    for name in ("latency", "ttft", "tpot"):
        arrays = getattr(p, name)
        if len(arrays) > 1:
            setattr(p, name, [np.concatenate(arrays)])
    return p


class SeenIds:
    """The request_ids written so far, one bit each over the id range from the first id
    seen (trace ids are dense, 0..n-1: 45 MB for 360 M requests, where keeping the ids
    took 8 bytes each); ids below that or beyond 2**36 are kept and checked at the end.
    `check()` raises UserError naming the first id seen twice."""

    MAX_BITS = 1 << 36

    def __init__(self) -> None:
        self.lo: int | None = None
        self.bits = np.zeros(0, dtype=np.uint8)
        self.others: list[np.ndarray] = []
        self.repeated: int | None = None

    def add(self, ids: np.ndarray) -> None:
        """Record `ids` (one piece of written rows)."""
        if len(ids) == 0:
            return
        if self.lo is None:
            self.lo = min(0, int(ids.min()))
        idx = ids.astype(np.int64) - self.lo
        inside = (idx >= 0) & (idx < self.MAX_BITS)
        if not inside.all():
            self.others.append(ids[~inside])
            idx = idx[inside]
        if len(idx) == 0:
            return
        need = int(idx.max()) // 8 + 1
        if need > len(self.bits):
            self.bits = np.concatenate(
                [self.bits, np.zeros(max(need, 2 * len(self.bits)) - len(self.bits), np.uint8)]
            )
        byte, bit = idx >> 3, np.left_shift(1, idx & 7).astype(np.uint8)
        ordered = np.sort(idx)
        again = ordered[1:][ordered[1:] == ordered[:-1]]
        seen = idx[(self.bits[byte] & bit) != 0]
        if self.repeated is None and (len(again) or len(seen)):
            self.repeated = int((seen if len(seen) else again)[0]) + self.lo
        np.bitwise_or.at(self.bits, byte, bit)

    def check(self) -> None:
        """Raise when any id was recorded twice."""
        if self.repeated is not None:
            raise UserError(
                "request written more than once", field="request_id", value=self.repeated
            )
        if self.others:
            check_unique_ids(self.others)


def check_unique_ids(ids: list[np.ndarray]) -> None:
    """Fail when any request_id occurs twice. Dense ids (range under 8x their count, as a
    trace's usually are) are counted with one bincount; others are sorted."""
    all_ids = np.concatenate(ids)
    if len(all_ids) == 0:
        return
    lo, hi = int(all_ids.min()), int(all_ids.max())
    if hi - lo < 8 * len(all_ids):
        counts = np.bincount(all_ids - lo)
        dup = np.flatnonzero(counts > 1)[:1] + lo
    else:
        ordered = np.sort(all_ids)
        dup = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(dup):
        raise UserError("request written more than once", field="request_id", value=int(dup[0]))


def merge_stats(parts: Sequence[ShardStats]) -> ShardStats:
    """One ShardStats for shards that wrote disjoint requests (and devices), given in
    shard name order (the order `devstats.device_stats` reads a run back in)."""
    groups: dict[tuple[str, str], list[Partial]] = {}
    intervals: dict[str, list[RegionIntervals]] = {}
    for p in parts:
        for k, g in p.groups.items():
            groups.setdefault(k, []).append(g)
        for r, i in p.intervals.items():
            intervals.setdefault(r, []).append(i)
    return ShardStats(
        rows=sum(p.rows for p in parts),
        max_ns=max((p.max_ns for p in parts), default=0),
        groups={k: merge(v) for k, v in groups.items()},
        intervals={r: merge_intervals(v) for r, v in intervals.items()},
        devices=merge_device_stats([p.devices for p in parts if p.devices is not None]),
    )
