"""A shard: many cells advanced together, window by window (plain Python, no Ray).

``Shard(cells).advance(inbox, until_ns) -> (outbox, reports)``: `inbox` maps cell id to the
requests routed to it in the window; `outbox` is every request that finished before
`until_ns`; `reports` maps cell id to its load report. The Ray layer puts one shard in one
actor; the results never depend on how cells are grouped into shards.
"""

from __future__ import annotations

from collections.abc import Mapping

from mtia_cluster.engine.cell import Cell, Completed, DeviceCounters, LoadReport, RequestBatch


class Shard:
    """Cells by global cell id."""

    def __init__(self, cells: Mapping[int, Cell]) -> None:
        self.cells = dict(cells)

    def advance(
        self, inbox: Mapping[int, RequestBatch], until_ns: int
    ) -> tuple[Completed, dict[int, LoadReport]]:
        """Submit the window's requests, simulate up to `until_ns`, collect outputs."""
        unknown = set(inbox) - set(self.cells)
        if unknown:
            raise KeyError(f"cells not in this shard: {sorted(unknown)}")
        outputs = []
        reports = {}
        for cell_id, cell in self.cells.items():
            batch = inbox.get(cell_id)
            if batch is not None and len(batch):
                cell.submit(batch)
            done = cell.advance(until_ns)
            if len(done):
                outputs.append(done)
            reports[cell_id] = cell.report()
        return Completed.concat(outputs), reports

    def device_counters(self) -> DeviceCounters:
        """Cumulative counters of every accelerator in the shard (as of the last advance)."""
        return DeviceCounters.concat([c.device_counters() for c in self.cells.values()])
