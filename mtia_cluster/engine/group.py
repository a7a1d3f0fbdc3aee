"""Cell groups: how a shard holds cells as struct-of-arrays state.

A group simulates several cells at once (e.g. :class:`~mtia_cluster.engine.rr.RRHostGroup`,
the R&R hosts of a shard's pools with equal host parameters) and must give each cell exactly
the results it would get alone. Cells that are simulated one by one (synthetic servers, LLM
replicas) are wrapped in :class:`SingleCell`. Local index i of a group is global cell
``cell_ids[i]``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mtia_cluster.engine.cell import Cell, Completed, DeviceCounters, RequestBatch

# prefix-cache events of cells: (global cell id, hash id, +1 appeared / -1 gone) per event
PrefixEvents = tuple[np.ndarray, np.ndarray, np.ndarray]


class CellGroup(Protocol):
    cell_ids: np.ndarray

    def submit(self, local: np.ndarray, batch: RequestBatch) -> None:
        """Requests (sorted by arrival) routed to local cells `local`."""
        ...

    def advance(self, until_ns: int) -> Completed:
        """Process every event before `until_ns`; requests finished before it."""
        ...

    def outstanding(self) -> np.ndarray:
        """Per local cell: requests submitted and not finished, as of the last advance."""
        ...

    def capacity(self) -> np.ndarray:
        """Per local cell: capacity weight for the router."""
        ...

    def device_counters(self) -> DeviceCounters:
        """Cumulative per-accelerator counters up to the last advance bound."""
        ...

    def evict(self, local: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        """Local cells `local` fail at `at_ns` (the last advance bound): the requests they
        hold, in arrival order, with the local cell of each; the cells restart empty."""
        ...


class SingleCell:
    """A group of one :class:`~mtia_cluster.engine.cell.Cell`."""

    def __init__(self, cell_id: int, cell: Cell) -> None:
        self.cell_ids = np.array([cell_id], dtype=np.int64)
        self.cell = cell

    def submit(self, local: np.ndarray, batch: RequestBatch) -> None:
        if len(batch):
            self.cell.submit(batch)

    def advance(self, until_ns: int) -> Completed:
        return self.cell.advance(until_ns)

    def outstanding(self) -> np.ndarray:
        return np.array([self.cell.report().outstanding], dtype=np.int64)

    def capacity(self) -> np.ndarray:
        return np.array([self.cell.report().capacity_weight], dtype=np.float64)

    def device_counters(self) -> DeviceCounters:
        return self.cell.device_counters()

    def quiet_until(self) -> int | None:
        """The cell's ``quiet_until()`` when its class has one (engine/shard.py), else None."""
        quiet = getattr(type(self.cell), "quiet_until", None)  # of the class: no proxies
        return quiet(self.cell) if quiet is not None else None

    def prefix_events(self) -> PrefixEvents | None:
        """The cell's prefix-cache events since the last call (LLM cells), else None."""
        drain = getattr(self.cell, "prefix_events", None)
        events = drain() if drain is not None else None
        if not events:
            return None
        hashes, signs = zip(*events, strict=True)
        return (
            np.full(len(events), self.cell_ids[0], dtype=np.int64),
            np.array(hashes, dtype=np.int64),
            np.array(signs, dtype=np.int8),
        )

    def evict(self, local: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        batch = self.cell.evict(at_ns)
        return batch, np.zeros(len(batch), dtype=np.int64)
