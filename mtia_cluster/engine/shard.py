"""A shard: many cells advanced together, window by window (plain Python, no Ray).

``Shard(groups).advance(inbox, until_ns) -> (outbox, reports)``: `inbox` holds the requests
routed to the shard's cells in the window (one RequestBatch sorted by arrival plus the
global cell id of each row); `outbox` is every request that finished before `until_ns`;
`reports` are the cells' load reports. Everything crossing the boundary is numpy arrays, so
the Ray layer can move a shard into an actor; results never depend on the grouping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtia_cluster.engine.cell import Completed, DeviceCounters, RequestBatch
from mtia_cluster.engine.group import CellGroup, PrefixEvents

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


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The parts end to end; a single part as it is (no copy)."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def no_prefix_events() -> PrefixEvents:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)


class Shard:
    """Cell groups; every global cell id belongs to exactly one group."""

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
        # the cell id of each report row: the same array every window (the routing plane
        # recognizes it and copies the reports without indexing, engine/routing.py)
        self._report_ids = _joined([np.asarray(g.cell_ids, dtype=np.int64) for g in self.groups])

    def advance(self, inbox: Inbox | None, until_ns: int) -> tuple[Completed, LoadReports]:
        """Submit the window's requests, simulate up to `until_ns`, collect outputs."""
        if inbox is not None and len(inbox.requests):
            self._submit(inbox)
        outputs = [g.advance(until_ns) for g in self.groups]
        reports = LoadReports(
            cell_id=self._report_ids,
            outstanding=_joined([g.outstanding() for g in self.groups]),
            capacity_weight=_joined([g.capacity() for g in self.groups]),
            prefix=self._prefix_events(),
        )
        return Completed.concat([o for o in outputs if len(o)]), reports

    def _prefix_events(self) -> PrefixEvents:
        """Every group's prefix-cache events since the last reports."""
        parts = []
        for g in self.groups:
            drain = getattr(g, "prefix_events", None)
            events = drain() if drain is not None else None
            if events is not None:
                parts.append(events)
        if not parts:
            return no_prefix_events()
        cells, hashes, signs = zip(*parts, strict=True)
        return np.concatenate(cells), np.concatenate(hashes), np.concatenate(signs)

    def _submit(self, inbox: Inbox) -> None:
        """Hand each group its rows (arrival order kept); one group takes the inbox as is."""
        if np.any(inbox.cell >= len(self._group)) or np.any(self._group[inbox.cell] < 0):
            raise KeyError("inbox has requests for cells not in this shard")
        which = self._group[inbox.cell]
        local = self._local[inbox.cell]
        if len(self.groups) == 1 or bool(np.all(which == which[0])):
            self.groups[int(which[0])].submit(local, inbox.requests)
            return
        order = np.argsort(which, kind="stable")
        bounds = np.flatnonzero(np.diff(which[order])) + 1
        for rows in np.split(order, bounds):
            self.groups[int(which[rows[0]])].submit(local[rows], inbox.requests.take(rows))

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
            local = self._local[mine[self._group[mine] == gi]]
            batch, cell_local = group.evict(local, at_ns)
            batches.append(batch)
            where.append(group.cell_ids[cell_local])
        if not batches:
            return RequestBatch.empty(), np.zeros(0, dtype=np.int64)
        return RequestBatch.concat(batches), np.concatenate(where)

    def device_counters(self) -> DeviceCounters:
        """Cumulative counters of every accelerator in the shard (as of the last advance)."""
        return DeviceCounters.concat([g.device_counters() for g in self.groups])
