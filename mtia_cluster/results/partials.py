"""Summary statistics computed by the shards as they write, merged by the coordinator.

A shard already holds every request it writes, so it accumulates, per (region, service), the
mergeable :class:`~mtia_cluster.results.groupstats.Partial` and, per region, the
:class:`~mtia_cluster.results.intervals.RegionIntervals` of the `regions/` table, from exactly
the rows it writes (the request file columns). At close it returns a :class:`ShardStats`;
`finalize()` merges the shards' stats and writes `summary.json` and `regions/` without reading
the requests back. Merging is exact for any split of a region over shards (counts add, the
kept latency values are concatenated and the quantiles computed over the union), so the same
code serves region, rack and host placements and the single-process run.

request_id uniqueness: each shard checks its own ids at close (one sort of its ids); the
coordinator checks that the shards together wrote as many rows as the trace has (the trace
check already refused duplicate ids in the trace, and every row goes to exactly one shard).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.errors import UserError
from mtia_cluster.results.groupstats import Partial, merge, partial
from mtia_cluster.results.intervals import RegionIntervals, merge_intervals, region_intervals
from mtia_cluster.results.slo import ServiceSLO


@dataclass
class ShardStats:
    """What one shard (or a merge of several) contributes to the summary and `regions/`."""

    rows: int = 0
    max_ns: int = 0  # latest arrival_ns or finish_ns written (the span when none is given)
    groups: dict[tuple[str, str], Partial] = field(default_factory=dict)
    intervals: dict[str, RegionIntervals] = field(default_factory=dict)


class StatsBuilder:
    """Accumulates a ShardStats from the request rows a shard writes, piece by piece."""

    def __init__(
        self, slos: Mapping[str, ServiceSLO], interval_ns: int, check_unique: bool = True
    ) -> None:
        self.slos = slos
        self.interval_ns = interval_ns
        self.check_unique = check_unique
        self.rows = 0
        self.max_ns = 0
        self._groups: dict[tuple[str, str], list[Partial]] = {}
        self._intervals: dict[str, list[RegionIntervals]] = {}
        self._ids: list[np.ndarray] = []

    def add(self, region: str, table: pa.Table) -> None:
        """Rows of one region (request file columns: service, status, times, ...)."""
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        for col in ("arrival_ns", "finish_ns"):
            self.max_ns = max(self.max_ns, int(pc.max(table[col]).as_py()))
        svc = table["service"].cast(pa.string())
        for service in pc.unique(svc).to_pylist():
            rows = table.filter(pc.equal(svc, service))
            piece = partial(rows, self.slos.get(service), keep_tokens=True)
            self._groups.setdefault((region, service), []).append(piece)
        self._intervals.setdefault(region, []).append(region_intervals(table, self.interval_ns))
        if self.check_unique:
            self._ids.append(table["request_id"].to_numpy())

    def result(self) -> ShardStats:
        """The merged statistics; raises UserError when a request_id was written twice."""
        if self._ids:
            check_unique_ids(self._ids)
        groups = {k: _compact(merge(v)) for k, v in self._groups.items()}
        intervals = {r: merge_intervals(v) for r, v in self._intervals.items()}
        return ShardStats(self.rows, self.max_ns, groups, intervals)


def _compact(p: Partial) -> Partial:
    """One array per kept metric (fewer, larger objects to ship through Ray)."""
    for name in ("latency", "ttft", "tpot"):
        arrays = getattr(p, name)
        if len(arrays) > 1:
            setattr(p, name, [np.concatenate(arrays)])
    return p


def check_unique_ids(ids: list[np.ndarray]) -> None:
    """Fail when any request_id occurs twice."""
    all_ids = np.sort(np.concatenate(ids))
    dup = all_ids[1:][all_ids[1:] == all_ids[:-1]]
    if len(dup):
        raise UserError("request written more than once", field="request_id", value=int(dup[0]))


def merge_stats(parts: Sequence[ShardStats]) -> ShardStats:
    """One ShardStats for shards that wrote disjoint requests."""
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
    )
