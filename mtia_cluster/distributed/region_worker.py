"""A shard that owns whole regions: it reads its regions' trace slice and routes them itself.

Regions never interact (each has its own routers and cells), so a shard holding all cells of
its regions runs the window loop locally for a whole epoch per call, instead of one Ray call
per window. Under global routing (policy spill, #16) regions do interact: then one shard owns
every region (distributed/prepare.py region_groups), so spill never crosses shards. The
loop is the engine's :func:`~mtia_cluster.engine.windows.run_windows`, so the results equal
the coordinator-driven path and the single-process engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.distributed.trace_scan import RangeReader, last_arrival_ns, regions_complete
from mtia_cluster.distributed.worker import ShardWorker
from mtia_cluster.engine.autoscale import autoscale_hooks, build_autoscaler
from mtia_cluster.engine.cell import Completed, RequestBatch
from mtia_cluster.engine.events import FleetEvents, fleet_event_hooks, resolve_events
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.shard import Reports
from mtia_cluster.engine.windows import LoopHooks, LoopState, finish, run_windows


@dataclass(frozen=True)
class EpochProgress:
    """Where a region shard stands after an epoch (`RegionWorker.run_epoch`)."""

    t_ns: int  # start of its next window
    rows_done: int  # trace rows of its slice routed so far
    rows: int  # rows of its slice
    finished: bool  # nothing left to run


class RegionWorker(ShardWorker):
    """A shard worker that also routes: cells, routing plane and trace rows of its regions."""

    def __init__(
        self,
        scenario_raw: dict[str, Any],
        scenario_file: str | None,
        cell_ids: list[int],
        target: Any,
        name: str,
        trace_path: str,
        regions: list[int],
    ) -> None:
        self._pending_extra: Any = None
        super().__init__(scenario_raw, scenario_file, cell_ids, target, name)
        with self.timeline.span("init.routers"):
            # routers and report arrays over the fleet's ids, capacities of this shard's
            # cells (only its regions' cells are ever routed to here)
            scenario = parse_scenario(scenario_raw, scenario_file)
            self.plane = RoutingPlane(scenario, self.topology, self.shard.groups)
        with self.timeline.span("init.read_trace"):
            self.slice = TraceSlice(trace_path, regions, self.plane)
            self.trace = self.slice.whole(self.plane)
        self.state = LoopState()
        self.events = _region_events(self.plane, regions)
        # autoscaling decisions are per (region, service): this shard makes its regions' own
        self.scaler = build_autoscaler(self.topology, scenario.report_interval_ns, regions)
        self.hooks = self._hooks()
        if self._pending_extra is not None:
            self._set_extra_state(self._pending_extra)

    def _hooks(self) -> LoopHooks:
        """The loop's hooks: this shard's cells, samples and fleet events (the engine's
        semantics, engine/events.py)."""
        return LoopHooks(
            advance=self._advance,
            sample=self.sample,
            events=autoscale_hooks(
                fleet_event_hooks(self.events, self.plane, self.shard.evict, self._emit),
                self.scaler,
                self.plane,
                self.events,
                self.shard.device_counters,
            ),
        )

    def _extra_state(self) -> Any:
        p = self.plane
        return (
            self.state,
            p.saved_state(),
            self.events,
            p.global_router,
            self.scaler,
            # rows read so far (a restored shard reads on from read_ns, its rows consumed)
            (self.slice.read_ns, self.slice.rows_before + len(self.trace)),
        )

    def _set_extra_state(self, extra: Any) -> None:
        p = self.plane
        self.state, saved, self.events, p.global_router, self.scaler, read = extra
        p.restore_state(saved)
        self.slice.read_ns, self.slice.rows_before = read
        if self.slice.ranged:
            self.trace = RequestBatch.empty()
        self.hooks = self._hooks()

    def _final(self, rows: Completed) -> Completed:
        """Retried requests' rows get their original arrival back before they are written;
        spilled rows their origin and RTT (#16)."""
        rows = self.events.restore_arrivals(rows)
        router = self.plane.global_router
        return router.annotate(rows) if router is not None else rows

    def _advance(self, arrivals: RequestBatch, cell: np.ndarray, until_ns: int) -> list[Reports]:
        return [self.advance(arrivals.columns(), cell, until_ns)]

    def run_epoch(self, stop_ns: int) -> EpochProgress:
        """Run this shard's windows that start before `stop_ns` (reading the rows that
        arrive before it first, when the slice is read a time range at a time)."""
        self.hooks.stop_ns = stop_ns
        if self.slice.ranged:
            with self.timeline.span("read_trace"):
                self.trace = self.slice.until(self.plane, stop_ns, len(self.trace))
            self.state.lo = 0
        with self.timeline.span("epochs"):
            run_windows(self.plane, self.trace, self.state, self.hooks)
        done = self.state.finished(self.plane, len(self.trace)) and self.slice.ended(stop_ns)
        rows = self.slice.rows_before + len(self.trace)
        return EpochProgress(self.state.t, self.slice.rows_before + self.state.lo, rows, done)

    def fleet_events(self) -> list[dict[str, Any]]:
        """The fleet events this shard applied, in order (engine/events.py's log)."""
        return list(self.events.log)

    def autoscale_log(self) -> list[dict[str, Any]]:
        """Replica counts of this shard's autoscaled (region, service)s (engine/autoscale.py)."""
        return list(self.scaler.log)

    def finish_run(self, end_ns: int) -> None:
        """Pad device samples to the run's global end."""
        with self.timeline.span("finish_run"):
            finish(self.state, end_ns, self.plane.scenario.metrics_interval_ns, self.sample)


class TraceSlice:
    """The trace rows of a region shard. Read a time range per epoch (`until`) when every
    row names its region: an epoch's windows consume exactly the rows arriving before its
    end (epoch bounds are multiples of the report interval), so memory holds one epoch of
    rows, not the run; one open reader continues from epoch to epoch (`RangeReader`).
    Otherwise read whole at the start (`whole`): rows without a region draw their regions
    from one stream in trace order."""

    def __init__(self, path: str, regions: list[int], plane: RoutingPlane) -> None:
        self.path, self.regions = path, regions
        self.reader = RangeReader(plane, path, regions)
        self.ranged = plane.global_router is not None or regions_complete(path)
        self.last_ns = last_arrival_ns(path)
        self.read_ns = 0  # rows arriving before it have been read (ranged)
        self.rows_before = 0  # rows of the slice in earlier epochs (ranged)

    def whole(self, plane: RoutingPlane) -> RequestBatch:
        """The whole slice (not ranged), else no rows yet."""
        return RequestBatch.empty() if self.ranged else self.reader.read()

    def until(self, plane: RoutingPlane, stop_ns: int, consumed: int) -> RequestBatch:
        """The rows arriving in [read_ns, stop_ns); `consumed`: rows of the previous range."""
        self.rows_before += consumed
        rows = self.reader.read(self.read_ns, stop_ns)
        self.read_ns = max(self.read_ns, stop_ns)
        return rows

    def ended(self, stop_ns: int) -> bool:
        """No row of the trace arrives at or after `stop_ns` (always, when read whole)."""
        return not self.ranged or stop_ns > self.last_ns


def _region_events(plane: RoutingPlane, regions: list[int]) -> FleetEvents:
    """The scenario's fleet events (drawn failures included) of these regions only: regions
    never interact, so each region's shard applies its own events."""
    sc = plane.scenario
    every = resolve_events(sc.events, plane.topology, sc.report_interval_ns)
    names = {plane.regions[r] for r in regions}
    every.events = [e for e in every.events if e.spec.region in names]
    return every
