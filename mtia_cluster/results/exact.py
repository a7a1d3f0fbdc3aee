"""Exact quantiles of a written run from bounded statistics: one collecting read (issue 18).

A shard writer's statistics (results/partials.py, ``bounded``) keep no latency values: per
(region, service) a histogram (results/hist.py `ValueHist`: counts per log-linear bucket,
under 0.8% wide) of each kept metric (latency; TTFT and TPOT of LLM services; network time)
and per region the `regions/` counts per interval. So the memory of a run depends on the
fleet and the number of intervals, not on its requests. `resolve_exact` then reads the
written `requests/` parts once, region by region, row group by row group (only the columns
the figures use), and

* for every quantile of every group and of the fleet's services, locates from the
  histogram the bucket and the rank within it of the two order statistics numpy's linear
  interpolation needs, collects only the values falling in those buckets (distinct values
  with counts: `ValueCollector`) and interpolates as `np.quantile` does (`hist.resolve`);
* for the `regions/` per-interval quantiles, reads each region's row groups in the order of
  their smallest ``finish_ns`` (Parquet statistics) and computes an interval's quantiles
  (the `intervals.sorted_quantiles` of the kept-value path) as soon as no unread row group
  can hold a request finishing in it: only the requests finishing at or after the earliest
  unread finish are held (about one row group per shard writing the region).

The figures are the numbers the kept-value path gives, bit for bit (tests/results compare
both paths and numpy). Each collected bucket must hold exactly as many values as its
histogram counted, and each interval as many as its completed count: a written dataset
that does not match its statistics is refused (RuntimeError), never summarized.
Integer values are interpolated in float64 as numpy does; they are exact below 2**53
(ns: 104 days).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mtia_cluster.results.groupstats import (
    QUANTILES,
    STATUSES,
    TOKEN_QUANTILES,
    Partial,
    codes,
    kind_of,
    merge,
    metric_values,
)
from mtia_cluster.results.hist import ValueCollector, bucket_of, group_targets, resolve
from mtia_cluster.results.intervals import QS, sorted_by_bin_then_value, sorted_quantiles
from mtia_cluster.results.partials import ShardStats
from mtia_cluster.slo import ServiceSLO

Target = tuple[str, int, int, float]  # quantile name, bucket, rank within it, fraction
_METRIC_QS = {
    "latency": QUANTILES,
    "ttft": TOKEN_QUANTILES,
    "tpot": TOKEN_QUANTILES,
    "network": TOKEN_QUANTILES,
}
_BASE = ["service", "status", "latency_ns", "finish_ns"]
_TOKENS = ["arrival_ns", "first_token_ns", "output_tokens"]


class MismatchError(RuntimeError):
    """The written rows do not match the statistics the shards accumulated from them."""


@dataclass
class Wanted:
    """The quantiles of one metric of one group (region or fleet, service): where their
    order statistics lie (`targets`), the values collected there, the bucket counts."""

    targets: list[Target]
    counts: np.ndarray
    collector: ValueCollector
    zeros: int = 0  # values 0 counted in bucket 0 but never collected (network time)

    @classmethod
    def of(cls, counts: np.ndarray, qs: Mapping[str, float], zeros: int = 0) -> Wanted:
        keys = np.flatnonzero(counts)
        targets = group_targets(keys, counts[keys], qs)
        return cls(targets, counts, ValueCollector(np.array([t[1] for t in targets])), zeros)

    def resolved(self) -> dict[str, float | None]:
        """The exact quantiles; MismatchError when a bucket did not get all its values."""
        found = self.collector.value_at()
        if self.zeros and 0 not in found:  # no value below 1 is collected: the zeros alone
            found[0] = (np.zeros(1), np.array([self.zeros]))
        for key in {t[1] for t in self.targets}:
            got = int(found[key][1][-1]) if key in found else 0
            if got != int(self.counts[key]):
                raise MismatchError(f"bucket {key}: {got} values read, {self.counts[key]} counted")
        return dict(resolve({0: self.targets}, found)[0])


def _wanted_of(p: Partial, slo: ServiceSLO | None) -> dict[str, Wanted]:
    """Per metric the figures of group `p` need (empty metrics need none)."""
    assert p.hists is not None
    names = ["latency", "network"] + (["ttft", "tpot"] if kind_of(slo, p) == "llm" else [])
    out = {}
    for name in names:
        h = p.hists.get(name)
        if h is None or h.n == 0:
            continue
        counts, zeros = h.counts, 0
        if name == "network":  # the ok requests without network time count as 0
            zeros = int(p.counts[0]) - h.n
            counts = np.concatenate([[counts[0] + zeros], counts[1:]])
        out[name] = Wanted.of(counts, _METRIC_QS[name], zeros)
    return out


def _wanted_all(
    stats: ShardStats, services: Sequence[str], slos: Mapping[str, ServiceSLO]
) -> dict[tuple[str, str], dict[str, Wanted]]:
    """The wanted quantiles per (region, service) and per (fleet "*", service), the
    fleet's from the merged histograms of the service's regions."""
    wanted = {}
    for (region, service), p in stats.groups.items():
        wanted[(region, service)] = _wanted_of(p, slos.get(service))
    for service in services:
        mine = [p for (_, s), p in stats.groups.items() if s == service]
        if mine:
            wanted[("*", service)] = _wanted_of(merge(mine), slos.get(service))
    return wanted


class IntervalStream:
    """One region's per-interval latency quantiles from its ok requests, fed in any order
    of finish; an interval is computed once `flush(frontier)` says no later row finishes
    before it (module doc). `completed`: the region's ok requests per finish interval."""

    def __init__(self, interval_ns: int, completed: np.ndarray) -> None:
        self.interval_ns = interval_ns
        self.completed = completed
        self.out = [np.full(len(completed), np.nan) for _ in QS]
        self.seen = np.zeros(len(completed), dtype=np.int64)
        self.bins: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def add(self, finish_ns: np.ndarray, latency_ns: np.ndarray) -> None:
        """Ok requests (their finish time and latency)."""
        self.bins.append(finish_ns // self.interval_ns)
        self.values.append(latency_ns)

    def flush(self, frontier_ns: int | None) -> None:
        """Compute every interval ending at or before `frontier_ns` (None: all)."""
        if not self.bins:
            return
        bins, values = np.concatenate(self.bins), np.concatenate(self.values)
        done = (
            np.ones(len(bins), bool)
            if frontier_ns is None
            else bins < frontier_ns // self.interval_ns
        )
        self.bins, self.values = [bins[~done]], [values[~done]]
        bins, values = bins[done], values[done]
        if len(bins) == 0:
            return
        lo = int(bins.min())
        if int(bins.max()) >= len(self.completed):
            raise MismatchError("an ok request finishes after the last counted interval")
        counts = np.bincount(bins - lo)
        got = sorted_quantiles(
            sorted_by_bin_then_value(bins - lo, values), counts, list(QS.values())
        )
        has = np.flatnonzero(counts) + lo
        for out, q in zip(self.out, got, strict=True):
            out[has] = q[has - lo]
        self.seen[lo : lo + len(counts)] += counts

    def result(self) -> list[np.ndarray]:
        """Per QS entry, the quantile of each interval (NaN: none); MismatchError when an
        interval did not get exactly its completed requests."""
        self.flush(None)
        if not np.array_equal(self.seen, self.completed):
            raise MismatchError("the ok requests read do not match the completed counts")
        return self.out


def region_files(requests: ds.Dataset) -> dict[str, list[str]]:
    """The part files of each region partition."""
    out: dict[str, list[str]] = {}
    for fragment in requests.get_fragments():
        region = ds.get_partition_keys(fragment.partition_expression).get("region")
        out.setdefault(str(region), []).append(fragment.path)
    return out


def _min_finish(md: pq.FileMetaData, rg: int) -> int:
    """Smallest finish_ns of a row group (its statistics; 0 when it has none)."""
    col = md.row_group(rg).column(md.schema.names.index("finish_ns"))
    stats = col.statistics
    return int(stats.min) if stats is not None and stats.has_min_max else 0


def row_groups(
    paths: list[str], columns: list[str], services: tuple[str, ...]
) -> Iterator[tuple[dict[str, np.ndarray], int | None]]:
    """The row groups of one region's files in the order of their smallest finish_ns, as
    numpy columns (status and service as their index in STATUSES and `services`), each with
    the smallest finish_ns of the row groups after it (None after the last)."""
    files = [pq.ParquetFile(p, pre_buffer=False) for p in paths]
    order = sorted(
        (_min_finish(f.metadata, rg), i, rg)
        for i, f in enumerate(files)
        for rg in range(f.metadata.num_row_groups)
    )
    coded = ("status", "service", "network_ns")
    for k, (_, i, rg) in enumerate(order):
        present = set(files[i].schema_arrow.names)
        wanted = [c for c in columns if c in present]
        t = files[i].read_row_group(rg, columns=wanted, use_threads=False)
        cols = {n: t[n].to_numpy() for n in t.column_names if n not in coded}
        cols["status"] = codes(t["status"], STATUSES)
        cols["service"] = codes(t["service"], services)
        if "network_ns" in t.column_names:
            cols["network_ns"] = t["network_ns"].fill_null(0).to_numpy()
        yield cols, order[k + 1][0] if k + 1 < len(order) else None


def _collect(
    c: dict[str, np.ndarray],
    services: tuple[str, ...],
    wanted: Mapping[str, Mapping[str, Wanted]],
    fleet: Mapping[str, Mapping[str, Wanted]],
) -> None:
    """Feed one row group's values to the collectors of its groups and of the fleet."""
    present = np.unique(c["service"])
    for code in present:
        name = services[code] if code >= 0 else ""
        mine, whole = wanted.get(name, {}), fleet.get(name, {})
        if not mine and not whole:
            continue
        sub = c if len(present) == 1 else {k: v[c["service"] == code] for k, v in c.items()}
        ok = sub["status"] == 0
        values = metric_values(sub, ok, "ttft" in mine or "ttft" in whole)
        for metric, v in values.items():
            keys = bucket_of(v)
            for w in (mine.get(metric), whole.get(metric)):
                if w is not None:
                    w.collector.add(keys, v)


def _columns_for(wanted: Mapping[tuple[str, str], Mapping[str, Wanted]]) -> list[str]:
    """The request columns the wanted figures read."""
    metrics = {m for w in wanted.values() for m in w}
    return (
        _BASE
        + (_TOKENS if "ttft" in metrics else [])
        + (["network_ns"] if "network" in metrics else [])
    )


def resolve_exact(
    stats: ShardStats,
    requests: ds.Dataset,
    *,
    services: Sequence[str],
    slos: Mapping[str, ServiceSLO],
    interval_ns: int,
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Fill the exact quantiles of bounded `stats` from the rows they were accumulated
    from (`requests`: the run's `requests/` dataset): each group's `Partial.resolved` and
    each region's `RegionIntervals.quantiles`. Returns the fleet's: service -> metric ->
    quantiles (for `summary_from_partials`). See the module doc."""
    names = tuple(services)
    wanted = _wanted_all(stats, names, slos)
    fleet = {s: w for (r, s), w in wanted.items() if r == "*"}
    columns = _columns_for(wanted)
    files = region_files(requests)
    for region in sorted({*files, *(r for r, _ in stats.groups)}):
        paths = files.get(region, [])
        mine = {s: w for (r, s), w in wanted.items() if r == region}
        ri = stats.intervals.get(region)
        stream = (
            IntervalStream(interval_ns, ri.completed) if ri is not None and ri.bounded else None
        )
        rows = 0
        for c, frontier in row_groups(paths, columns, names):
            rows += len(c["status"])
            _collect(c, names, mine, fleet)
            if stream is not None:
                ok = c["status"] == 0
                stream.add(c["finish_ns"][ok], c["latency_ns"][ok])
                stream.flush(frontier)
        offered = sum(p.offered for (r, _), p in stats.groups.items() if r == region)
        if rows != offered:
            raise MismatchError(f"region {region}: {rows} rows read, {offered} counted")
        for (r, s), p in stats.groups.items():
            if r == region:
                p.resolved = {m: w.resolved() for m, w in wanted[(r, s)].items()}
        if stream is not None and ri is not None:
            ri.quantiles = stream.result()
    return {s: {m: w.resolved() for m, w in ws.items()} for s, ws in fleet.items()}
