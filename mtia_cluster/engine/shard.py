"""A shard: many cells advanced together, window by window (plain Python, no Ray).

``Shard(groups).advance(inbox, until_ns) -> (outbox, reports)``: `inbox` holds the requests
routed to the shard's cells in the window (one RequestBatch sorted by arrival plus the
global cell id of each row); `outbox` is every request that finished before `until_ns`;
`reports` are the cells' load reports. Everything crossing the boundary is numpy arrays, so
the Ray layer can move a shard into an actor; results never depend on the grouping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from mtia_cluster.engine.cell import Completed, DeviceCounters, RequestBatch
from mtia_cluster.engine.group import CellGroup, PrefixEvents, SingleCell
from mtia_cluster.engine.llm.cell import LLMReplicaCell, counters_of

# LoadReports.arrays(): cell id, outstanding, capacity; prefix events: cell, hash id, sign
Reports = tuple[np.ndarray, ...]


@dataclass
class Inbox:
    """Requests for a shard's cells: rows sorted by arrival, `cell` = global cell id."""

    requests: RequestBatch
    cell: np.ndarray  # int64


@dataclass
class LoadReports:
    """One row per cell: global id, outstanding requests, capacity weight; then the cells'
    prefix-cache events since the last reports (``group.PrefixEvents``: cell, hash id,
    sign), for KV-aware routers."""

    cell_id: np.ndarray
    outstanding: np.ndarray
    capacity_weight: np.ndarray
    prefix: PrefixEvents = field(default_factory=lambda: no_prefix_events())

    def arrays(self) -> Reports:
        """The fields as plain arrays (what a shard actor returns)."""
        return (self.cell_id, self.outstanding, self.capacity_weight, *self.prefix)


def no_prefix_events() -> PrefixEvents:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)


class Shard:
    """Cell groups; every global cell id belongs to exactly one group.

    Lazy advancing: a group that can say when its next request can finish
    (``quiet_until()``, absent new submissions; LLM replicas, engine/llm/cell.py) and
    receives nothing in a window that ends by then is not advanced: it would return no row
    and report the same load. It catches up before anything reads its state (device
    counters, evictions); cells give identical results for any cut of time, so every output
    is the one of advancing every group every window (tested)."""

    def __init__(self, groups: list[CellGroup]) -> None:
        self.groups = list(groups)
        ids = np.concatenate([g.cell_ids for g in self.groups]) if self.groups else np.zeros(0)
        self.cell_ids = np.sort(ids.astype(np.int64))
        size = int(ids.max()) + 1 if len(ids) else 0
        self._group = np.full(size, -1, dtype=np.int64)
        self._local = np.full(size, -1, dtype=np.int64)
        for gi, g in enumerate(self.groups):
            self._group[g.cell_ids] = gi
            self._local[g.cell_ids] = np.arange(len(g.cell_ids))
        self._lazy = Lazy.of(self.groups)
        # the cells when every group is one plain LLM replica (device counters at once)
        self._replicas: list[LLMReplicaCell] | None = [
            g.cell for g in self.groups if type(g) is SingleCell and type(g.cell) is LLMReplicaCell
        ]
        if not self.groups or len(self._replicas) != len(self.groups):
            self._replicas = None
        else:  # one array for every sample (the caller checks its order by identity first)
            ids = np.concatenate([c.accelerator_ids for c in self._replicas])
            self._replica_ids = ids.astype(np.int32, copy=False)
        self.lazy = True  # False: advance every group every window (a check: same results)
        self._shown: DeviceCounters | None = None  # see show_counters
        self._none = Completed.empty()  # returned (never mutated) by windows finishing nothing

    def advance(self, inbox: Inbox | None, until_ns: int) -> tuple[Completed, LoadReports]:
        """Submit the window's requests, simulate up to `until_ns`, collect outputs. The
        reports hold every cell (those not advanced report their unchanged load)."""
        if inbox is not None and len(inbox.requests):
            self._submit(inbox)
        lazy = self._lazy
        lazy.until_ns = until_ns
        outputs, events = [], []
        for gi in lazy.due(until_ns) if self.lazy else range(len(self.groups)):
            group = self.groups[gi]
            done = group.advance(until_ns)
            if len(done):
                outputs.append(done)
            lazy.advanced(gi, group, until_ns)
            prefix = _drain_prefix(group)
            if prefix is not None:
                events.append(prefix)
        reports = LoadReports(
            cell_id=lazy.cell_id,
            outstanding=lazy.outstanding.copy(),
            capacity_weight=lazy.capacity.copy(),
            prefix=_concat_prefix(events),
        )
        return (Completed.concat(outputs) if outputs else self._none), reports

    @property
    def until_ns(self) -> int:
        """The last advance bound."""
        return self._lazy.until_ns

    def advanced_to(self, until_ns: int, refresh: bool) -> None:
        """Every group was advanced to `until_ns` outside the shard (the compiled LLM fleet,
        engine/llm/fleet.py): nothing is to catch up before reading counters; `refresh`:
        also take their reports and next finishes (as `advance` does)."""
        lazy = self._lazy
        lazy.until_ns = until_ns
        for gi, group in enumerate(self.groups):
            if refresh:
                lazy.advanced(gi, group, until_ns)
            else:
                lazy.at[gi] = until_ns

    def quiet_until(self) -> int | None:
        """A time before which no request of this shard finishes, absent new submissions
        (None: unknown; see ``Lazy``)."""
        return self._lazy.quiet_until()

    def _submit(self, inbox: Inbox) -> None:
        """Hand each group its rows (arrival order kept); one group takes the inbox as is."""
        cells = inbox.cell
        if len(cells) == 1:  # the usual window of a sparse trace: no array work
            cell = int(cells[0])
            gi = int(self._group[cell]) if 0 <= cell < len(self._group) else -1
            if gi < 0:
                raise KeyError("inbox has requests for cells not in this shard")
            self.groups[gi].submit(self._local[cells], inbox.requests)
            self._lazy.quiet[gi] = UNKNOWN
            return
        if np.any(cells >= len(self._group)) or np.any(self._group[cells] < 0):
            raise KeyError("inbox has requests for cells not in this shard")
        which = self._group[cells]
        local = self._local[cells]
        if len(self.groups) == 1 or bool(np.all(which == which[0])):
            gi = int(which[0])
            self.groups[gi].submit(local, inbox.requests)
            self._lazy.quiet[gi] = UNKNOWN
            return
        order = np.argsort(which, kind="stable")
        bounds = np.flatnonzero(np.diff(which[order])) + 1
        for rows in np.split(order, bounds):
            gi = int(which[rows[0]])
            self.groups[gi].submit(local[rows], inbox.requests.take(rows))
            self._lazy.quiet[gi] = UNKNOWN

    def evict(self, cells: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        """Cells `cells` (global ids, some maybe elsewhere) fail at `at_ns`, the last advance
        bound: the requests they held, with the global cell of each (group by group; the
        fleet events order the requests they route again)."""
        cells = np.asarray(cells, dtype=np.int64)
        known = cells[cells < len(self._group)]
        mine = known[self._group[known] >= 0]
        batches, where = [], []
        for gi in np.unique(self._group[mine]).tolist():
            group = self.groups[gi]
            self._lazy.catch_up(gi, group)
            local = self._local[mine[self._group[mine] == gi]]
            batch, cell_local = group.evict(local, at_ns)
            self._lazy.quiet[gi] = UNKNOWN  # advanced (and reported) at the next window
            batches.append(batch)
            where.append(group.cell_ids[cell_local])
        if not batches:
            return RequestBatch.empty(), np.zeros(0, dtype=np.int64)
        return RequestBatch.concat(batches), np.concatenate(where)

    def replica_layout(self) -> tuple[np.ndarray, list[int]] | None:
        """(accelerator ids, accelerators per replica) when every group is one plain LLM
        replica (the layout of its `device_counters`), else None."""
        if self._replicas is None:
            return None
        return self._replica_ids, [len(c.accelerator_ids) for c in self._replicas]

    def show_counters(self, counters: DeviceCounters | None) -> None:
        """`device_counters` returns `counters` until this is called with None: the compiled
        LLM fleet's samples at the metrics boundaries inside a span, computed from the
        replicas' recorded scalars (engine/llm/fleetcounters.py) before they are written
        back."""
        self._shown = counters

    def device_counters(self) -> DeviceCounters:
        """Cumulative counters of every accelerator in the shard (as of the last advance;
        groups not advanced catch up first)."""
        if self._shown is not None:
            return self._shown
        for gi, group in enumerate(self.groups):
            self._lazy.catch_up(gi, group)
        if self._replicas is not None:  # LLM replicas only: built column by column
            return counters_of(self._replicas, self._replica_ids)
        return DeviceCounters.concat([g.device_counters() for g in self.groups])


UNKNOWN = -1  # a group's next finish is unknown: it is advanced every window
NEVER = 2**62  # nothing in flight: no request finishes before new submissions


@dataclass
class Lazy:
    """What a shard knows of its groups between advances: per group, the time before which
    none of its requests finishes absent new submissions (``quiet``: `NEVER` when nothing is
    in flight, the group's ``quiet_until()`` when it has one, else `UNKNOWN`) and its last
    advance bound (``at``); the load reports of every cell (a group not advanced reports
    what it reported last; capacity weights are constant and read once)."""

    quiet: list[int]
    at: list[int]
    slices: list[slice]
    cell_id: np.ndarray
    outstanding: np.ndarray
    capacity: np.ndarray
    until_ns: int = 0  # the shard's last advance bound

    @classmethod
    def of(cls, groups: list[CellGroup]) -> Lazy:
        """Every group due (unknown) before the first advance."""
        ends = np.cumsum([0, *(len(g.cell_ids) for g in groups)]).tolist()
        slices = [slice(a, b) for a, b in pairwise(ends)]
        cell_id = np.concatenate([g.cell_ids for g in groups]) if groups else np.zeros(0)
        capacity = np.concatenate([g.capacity() for g in groups]) if groups else np.zeros(0)
        return cls(
            [UNKNOWN] * len(groups), [0] * len(groups), slices, cell_id.astype(np.int64),
            np.zeros(len(cell_id), np.int64), capacity.astype(np.float64),
        )  # fmt: skip

    def due(self, until_ns: int) -> list[int]:
        """The groups to advance to `until_ns`: those whose next finish may come before it."""
        return [gi for gi, q in enumerate(self.quiet) if until_ns > q]

    def advanced(self, gi: int, group: CellGroup, until_ns: int) -> None:
        """Group `gi` was advanced to `until_ns`: its reports and its next finish."""
        where = self.slices[gi]
        outstanding = group.outstanding()
        self.outstanding[where] = outstanding
        self.at[gi] = until_ns
        if not np.count_nonzero(outstanding):
            self.quiet[gi] = NEVER
            return
        quiet = getattr(type(group), "quiet_until", None)  # of the class: no proxies
        bound = quiet(group) if quiet is not None else None
        self.quiet[gi] = UNKNOWN if bound is None else bound

    def catch_up(self, gi: int, group: CellGroup) -> None:
        """Advance group `gi` to the shard's last bound if it was skipped (it finishes
        nothing: the bound is before its next finish)."""
        if self.at[gi] < self.until_ns:
            if len(group.advance(self.until_ns)):
                raise RuntimeError("a group finished requests before its quiet_until bound")
            self.at[gi] = self.until_ns

    def quiet_until(self) -> int | None:
        """The earliest group bound; None if some group's is unknown."""
        if not self.quiet:
            return NEVER
        first = min(self.quiet)
        return None if first == UNKNOWN else first


def _drain_prefix(group: CellGroup) -> PrefixEvents | None:
    """The group's prefix-cache events since the last call (KV-aware routers), or None."""
    drain = getattr(group, "prefix_events", None)
    return drain() if drain is not None else None


def _concat_prefix(parts: list[PrefixEvents]) -> PrefixEvents:
    if not parts:
        return no_prefix_events()
    cells, hashes, signs = zip(*parts, strict=True)
    return np.concatenate(cells), np.concatenate(hashes), np.concatenate(signs)
