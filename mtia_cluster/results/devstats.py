"""Per-accelerator device totals, accumulated as `devices` rows are written or read back.

The summary's device figures (utilization, energy, costs per group; energy per region per
interval for `regions/`; LLM replica rows) need only per-accelerator totals and one energy
sum per (region, interval bin). A :class:`DeviceStatsBuilder` accumulates them one device
interval at a time (a shard writer feeds it the tables it writes), in memory proportional to
the shard's accelerators, never to the run's length.

One summation order for every path, so summary.json, a summary derived from the files and
`analyze` give the same bits: per accelerator, its intervals added in time order; per group,
the accelerators' totals (ordered by accelerator id) summed by numpy; energy per (region,
bin): each writer shard's rows of the interval in the order written, then the shards in
name order. `device_stats(dataset)` reads a `devices/` dataset back the same way, file by
file (grouped by the writing shard's name, in sequence order) and batch by batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mtia_cluster.results.devices import COST_COLUMNS, DeviceTotals

INT_SUMS = (
    "busy_ns",
    "memory_bound_ns",
    "preemptions",
    "prefix_queried_tokens",
    "prefix_cached_tokens",
    "kv_transfers",
    "kv_transfer_bytes",
)
FLOAT_SUMS = ("energy_j", *[c for c in COST_COLUMNS if c != "memory_bound_ns"], "kv_token_s")
MAXIMA = ("kv_capacity_tokens", "kv_peak_tokens")
STATIC = ("accelerator_id", "host_id", "region", "service")
_PART = re.compile(r"^part-(?P<shard>.+)-(?P<seq>\d{6})\.parquet$")


@dataclass
class DeviceStats:
    """Totals per accelerator (parallel arrays ordered by accelerator id once merged) and
    energy per region per interval bin. `region` / `service` are codes into the name
    tables (-1: no service)."""

    regions: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # STATIC + sums + maxima
    start_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per acc
    end_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    device_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    energy_bins: dict[str, dict[int, float]] = field(default_factory=dict)
    present: frozenset[str] = frozenset()  # optional columns the rows had

    @property
    def accelerators(self) -> int:
        return len(self.start_ns)


def _codes(column: pa.ChunkedArray | pa.Array, names: list[str]) -> np.ndarray:
    """Codes of a (dictionary or string) name column into `names`, extended in place;
    null -> -1. One pass over the distinct names, none over the rows in Python."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    lut = np.array([*(_index(names, v) for v in arr.dictionary.to_pylist()), -1], np.int64)
    return lut[arr.indices.fill_null(len(lut) - 1).to_numpy()]


class DeviceStatsBuilder:
    """Accumulates one shard's DeviceStats, one interval's rows at a time (see module doc)."""

    def __init__(self, interval_ns: int) -> None:
        self.interval_ns = interval_ns
        self.stats = DeviceStats()
        self._ids: np.ndarray | None = None

    def add(self, table: pa.Table) -> None:
        """Rows of one device interval (every accelerator of the shard once)."""
        if table.num_rows == 0:
            return
        s = self.stats
        ids = table["accelerator_id"].to_numpy().astype(np.int64)
        if self._ids is None:
            self._first(table, ids)
        assert self._ids is not None
        order: np.ndarray | slice = slice(None)
        if not np.array_equal(ids, self._ids):
            order = np.argsort(ids)[np.argsort(np.argsort(self._ids))]
        start = table["interval_start_ns"].to_numpy()[order]
        end = table["interval_end_ns"].to_numpy()[order]
        s.start_ns = np.minimum(s.start_ns, start)
        s.end_ns = np.maximum(s.end_ns, end)
        s.device_ns += end - start
        for name in s.present:
            value = table[name].to_numpy()[order]
            if name in MAXIMA:
                s.columns[name] = np.maximum(s.columns[name], value)
            else:
                s.columns[name] += value
        self._energy_bin(table, order)

    def _first(self, table: pa.Table, ids: np.ndarray) -> None:
        """Fix the shard's accelerators and their static columns from its first rows."""
        s, n = self.stats, len(ids)
        self._ids = ids
        names = set(table.column_names)
        s.present = frozenset(c for c in (*INT_SUMS, *FLOAT_SUMS, *MAXIMA) if c in names)
        s.columns = {
            "accelerator_id": ids,
            "host_id": table["host_id"].to_numpy().astype(np.int64),
            "region": _codes(table["region"], s.regions),
            "service": _codes(table["service"], s.services),
        }
        for name in s.present:
            dtype = np.float64 if name in FLOAT_SUMS else np.int64
            s.columns[name] = np.zeros(n, dtype=dtype)
        s.start_ns = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        s.end_ns = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        s.device_ns = np.zeros(n, dtype=np.int64)

    def _energy_bin(self, table: pa.Table, order: np.ndarray | slice) -> None:
        """Energy of this interval's rows per region (accelerators in the order of the
        shard's first interval) into the interval's bin."""
        s = self.stats
        b = int(table["interval_start_ns"][0].as_py()) // self.interval_ns
        region = s.columns["region"]
        sums = np.bincount(region, weights=table["energy_j"].to_numpy()[order])
        for code in np.flatnonzero(np.bincount(region)).tolist():
            bins = s.energy_bins.setdefault(s.regions[code], {})
            bins[b] = bins.get(b, 0.0) + float(sums[code])


def merge_device_stats(parts: Sequence[DeviceStats]) -> DeviceStats | None:
    """One DeviceStats for shards owning disjoint accelerators, given in shard name order:
    accelerators ordered by id, energy bins summed in the order given."""
    parts = [p for p in parts if p.accelerators]
    if not parts:
        return None
    regions: list[str] = []
    services: list[str] = []
    recoded = [_recode(p, regions, services) for p in parts]
    present = frozenset.intersection(*(p.present for p in parts))
    names = [*STATIC, *sorted(present)]
    ids = np.concatenate([c["accelerator_id"] for c in recoded])
    order = np.argsort(ids, kind="stable")
    out = DeviceStats(regions, services, present=present)
    out.columns = {n: np.concatenate([c[n] for c in recoded])[order] for n in names}
    for attr in ("start_ns", "end_ns", "device_ns"):
        setattr(out, attr, np.concatenate([getattr(p, attr) for p in parts])[order])
    for p in parts:
        for region, bins in p.energy_bins.items():
            mine = out.energy_bins.setdefault(region, {})
            for b, joules in bins.items():
                mine[b] = mine.get(b, 0.0) + joules
    return out


def _recode(p: DeviceStats, regions: list[str], services: list[str]) -> dict[str, np.ndarray]:
    """`p`'s columns with region / service codes into the shared name tables."""
    cols = dict(p.columns)
    for name, table, mine in (("region", regions, p.regions), ("service", services, p.services)):
        lut = np.array([*(_index(table, v) for v in mine), -1], dtype=np.int64)
        cols[name] = lut[cols[name]]  # -1 (no service) picks the trailing -1
    return cols


def _index(names: list[str], value: str) -> int:
    if value not in names:
        names.append(value)
    return names.index(value)


def device_stats(dataset: ds.Dataset | None, interval_ns: int) -> DeviceStats | None:
    """DeviceStats of a `devices/` dataset read back (see module doc); None without rows."""
    if dataset is None:
        return None
    shards: dict[str, list[tuple[int, str]]] = {}
    files = list(getattr(dataset, "files", None) or [])
    for path in files:
        match = _PART.match(Path(path).name)
        shard, seq = (match["shard"], int(match["seq"])) if match else (Path(path).name, 0)
        shards.setdefault(shard, []).append((seq, path))
    parts = []
    if not files:  # an in-memory dataset: one writer
        parts.append(_built(_intervals([dataset.to_table()]), interval_ns))
    for name in sorted(shards):
        paths = [path for _, path in sorted(shards[name])]
        parts.append(_built((t for p in paths for t in device_intervals(p)), interval_ns))
    return merge_device_stats(parts)


def stats_of_intervals(tables: Iterable[pa.Table], interval_ns: int) -> DeviceStats | None:
    """DeviceStats of one writer's device interval tables, in the order written."""
    return merge_device_stats([_built(iter(tables), interval_ns)])


def device_intervals(path: str) -> Iterator[pa.Table]:
    """One device part file's rows, one table per interval, read batch by batch."""
    return _intervals(_file_batches(path))


def _built(intervals: Iterator[pa.Table], interval_ns: int) -> DeviceStats:
    builder = DeviceStatsBuilder(interval_ns)
    for table in intervals:
        builder.add(table)
    return builder.stats


def _file_batches(path: str) -> Iterator[pa.Table]:
    """A Parquet file's rows in order, batch by batch."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=262_144):
        yield pa.Table.from_batches([batch])


def _intervals(tables: Iterator[pa.Table] | list[pa.Table]) -> Iterator[pa.Table]:
    """Rows regrouped into one table per device interval (runs of equal interval start,
    as a writer writes them), whatever the batches' boundaries."""
    pending: list[pa.Table] = []
    for table in tables:
        start = table["interval_start_ns"].to_numpy()
        cuts = np.flatnonzero(start[1:] != start[:-1]) + 1
        pieces = np.split(np.arange(len(start)), cuts) if len(start) else []
        for i, rows in enumerate(pieces):
            piece = table.slice(int(rows[0]), len(rows))
            if pending and (i > 0 or _start(pending[-1]) != int(start[0])):
                yield pa.concat_tables(pending)
                pending = []
            pending.append(piece)
    if pending:
        yield pa.concat_tables(pending)


def _start(table: pa.Table) -> int:
    return int(pc.min(table["interval_start_ns"]).as_py())


def totals_of(stats: DeviceStats | None) -> dict[tuple[str, str | None], DeviceTotals]:
    """Totals per (region, service or None for idle accelerators), keys sorted, then per
    ("*", service), (region, "*") and ("*", "*"): each a sum over its accelerators, ordered
    by id (see module doc). The coarser rows are summed from the accelerators too, not from
    the finer rows, as `analyze` sums its levels: float sums in another order differ in the
    last bit, and summary.json and `analyze` must show the same figure."""
    if stats is None:
        return {}
    width = len(stats.services) + 1
    region, service = stats.columns["region"], stats.columns["service"]
    out: dict[tuple[str, str | None], DeviceTotals] = {}
    for k, totals in group_totals(stats, region * width + service + 1).items():
        code = k % width - 1
        out[(stats.regions[k // width], None if code < 0 else stats.services[code])] = totals
    out = dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")))
    for k, totals in group_totals(stats, service).items():
        if k >= 0:
            out[("*", stats.services[k])] = totals
    for k, totals in group_totals(stats, region).items():
        out[(stats.regions[k], "*")] = totals
    for totals in group_totals(stats, np.zeros(len(region), dtype=np.int64)).values():
        out[("*", "*")] = totals
    return out


def group_totals(stats: DeviceStats, key: np.ndarray) -> dict[int, DeviceTotals]:
    """Totals per group of accelerators (`key`: a group id per accelerator of `stats`), each
    summed over its accelerators in id order: summary groups and `analyze` groups alike."""
    c = stats.columns
    out: dict[int, DeviceTotals] = {}
    for k in np.unique(key).tolist():
        sel = key == k
        out[int(k)] = DeviceTotals(
            busy_ns=int(c["busy_ns"][sel].sum()),
            device_ns=int(stats.device_ns[sel].sum()),
            energy_j=float(np.sum(c["energy_j"][sel])),
            start_ns=int(stats.start_ns[sel].min()),
            end_ns=int(stats.end_ns[sel].max()),
            accelerators=set(c["accelerator_id"][sel].tolist()),
            cost={n: float(np.sum(c[n][sel])) if n in c else 0.0 for n in COST_COLUMNS},
        )
    return out


def names_of(stats: DeviceStats, column: str) -> pa.Array:
    """The region or service name of each accelerator of `stats` (null: no service)."""
    names = stats.regions if column == "region" else stats.services
    codes = stats.columns[column]
    table = pa.array([*names, None], type=pa.string())
    return table.take(pa.array(np.where(codes < 0, len(names), codes)))
