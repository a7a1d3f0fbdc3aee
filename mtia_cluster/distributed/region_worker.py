"""A shard that owns whole regions: it reads its regions' trace slice and routes them itself.

Regions never interact (each has its own routers and cells), so a shard holding all cells of
its regions runs the window loop locally for a whole epoch per call, instead of one Ray call
per window. Under global routing (policy spill, #16) regions do interact: then one shard owns
every region (distributed/prepare.py region_groups), so spill never crosses shards. The
loop is the engine's :func:`~mtia_cluster.engine.windows.run_windows`, so the results equal
the coordinator-driven path and the single-process engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.distributed.trace_scan import region_slice
from mtia_cluster.distributed.worker import ShardWorker
from mtia_cluster.engine.capacity import routing_capacity
from mtia_cluster.engine.cell import Completed, RequestBatch, rejected_at_arrival
from mtia_cluster.engine.events import FleetEvents, resolve_events
from mtia_cluster.engine.simulation import Simulation, make_global_router
from mtia_cluster.engine.windows import EventHooks, LoopState, finish, run_windows

Progress = tuple[int, int, int, bool]  # window start t, rows done, rows, finished


class RegionWorker(ShardWorker):
    """A shard worker that also routes: cells, routers and trace rows of its regions."""

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
            self.sim = _routing_only(parse_scenario(scenario_raw, scenario_file), self)
        with self.timeline.span("init.read_trace"):
            self.trace = region_slice(self.sim, trace_path, regions)
        self.state = LoopState()
        self.events = _region_events(self.sim, regions)
        self.hooks = EventHooks(self.events.next_boundary, self._apply_due, self._unroutable)
        if self._pending_extra is not None:
            self._set_extra_state(self._pending_extra)

    def _extra_state(self) -> Any:
        sim = self.sim
        return (
            self.state,
            sim.routers,
            sim.outstanding,
            sim.capacity,
            self.events,
            sim.global_router,
        )

    def _set_extra_state(self, extra: Any) -> None:
        sim = self.sim
        self.state, sim.routers, sim.outstanding, sim.capacity, self.events = extra[:5]
        sim.global_router = extra[5]
        self.hooks = EventHooks(self.events.next_boundary, self._apply_due, self._unroutable)

    # -- fleet events of this shard's regions (the engine's semantics, engine/events.py) ---
    def _apply_due(self, t_ns: int) -> RequestBatch:
        retry, failed = self.events.apply_due(t_ns, self.sim.routers.values(), self._evict)
        self._emit(failed)
        return retry

    def _evict(self, cells: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        batch, cell = self.shard.evict(cells, at_ns)
        self.sim.outstanding[cells] = 0
        return batch, cell

    def _unroutable(self, batch: RequestBatch) -> None:
        self._emit(rejected_at_arrival(batch))

    def _flush(self) -> None:
        """Retried requests' rows get their original arrival back before they are written."""
        if self._pending and self.events.original_arrival:
            self._pending = [self.events.restore_arrivals(Completed.concat(self._pending))]
        if self._pending and self.sim.global_router is not None:  # spilled rows (#16)
            self._pending = [self.sim.global_router.annotate(Completed.concat(self._pending))]
        super()._flush()

    def _advance(self, arrivals: RequestBatch, cell: np.ndarray, until_ns: int) -> None:
        self.sim.take_reports(*self.advance(arrivals.columns(), cell, until_ns))

    def run_epoch(self, stop_ns: int) -> Progress:
        """Run this shard's windows that start before `stop_ns`."""
        with self.timeline.span("epochs"):
            run_windows(
                self.sim,
                self.trace,
                self.state,
                self._advance,
                self.sample,
                stop_ns,
                events=self.hooks,
            )
        done = self.state.finished(self.sim, len(self.trace))
        return self.state.t, self.state.lo, len(self.trace), done

    def fleet_events(self) -> list[dict[str, Any]]:
        """The fleet events this shard applied, in order (engine/events.py's log)."""
        return list(self.events.log)

    def finish_run(self, end_ns: int) -> None:
        """Pad device samples to the run's global end."""
        with self.timeline.span("finish_run"):
            finish(self.state, end_ns, self.sim.scenario.metrics_interval_ns, self.sample)


def _region_events(sim: Simulation, regions: list[int]) -> FleetEvents:
    """The scenario's fleet events (drawn failures included) of these regions only: regions
    never interact, so each region's shard applies its own events."""
    sc = sim.scenario
    every = resolve_events(sc.events, sim.topology, sc.report_interval_ns)
    names = {sim.regions[r] for r in regions}
    every.events = [e for e in every.events if e.spec.region in names]
    return every


def _routing_only(scenario: Any, worker: ShardWorker) -> Simulation:
    """A Simulation used only for routing and region assignment: routers, fleet ids and
    report arrays, but no cells (building every region's cells in every region's actor
    would multiply memory and start-up by the number of regions)."""
    sim = Simulation.__new__(Simulation)
    sim.scenario, sim.catalog, sim.topology = scenario, load_catalog(), worker.topology
    sim.services = scenario.services
    sim.regions = [r.name for r in scenario.regions]
    sim.shards = []
    sim.outstanding = np.zeros(sim.topology.cells, dtype=np.int64)
    sim.capacity = np.zeros(sim.topology.cells, dtype=np.float64)
    sim.routing_capacity = np.zeros(sim.topology.cells, dtype=np.float64)
    for group in worker.shard.groups:
        sim.capacity[group.cell_ids] = group.capacity()
        sim.routing_capacity[group.cell_ids] = routing_capacity(group)
    sim.routers = sim._routers()
    sim.global_router = make_global_router(scenario, sim.routers)  # one shard owns all (#16)
    return sim
