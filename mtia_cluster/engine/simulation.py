"""Single-process runner: a scenario's cells in shards, driven window by window over a trace.

`Simulation` holds the cells (split into shards, default one) and a routing plane
(engine/routing.py: the routers, region assignment, load reports); `run(trace)` runs the
window loop (engine/windows.py's `run_windows`, which the distributed runner also runs, in a
coordinator or in region-owning shards) with hooks that advance this process's shards,
sample their device counters and apply the scenario's fleet events
(engine/events.py's `fleet_event_hooks`, shared with the region shards). After the last
arrival, windows continue until every request has finished.

A request whose region has no pool for its service is returned with status ``rejected``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.config.scenario import Scenario
from mtia_cluster.config.scenario_limits import check_run
from mtia_cluster.engine.autoscale import autoscale_hooks, build_autoscaler
from mtia_cluster.engine.cell import (
    Completed,
    DeviceCounters,
    RequestBatch,
    rejected_at_arrival,
    sorted_by_request_id,
)
from mtia_cluster.engine.events import fleet_event_hooks, resolve_events
from mtia_cluster.engine.llm.fleet import CompiledFleet
from mtia_cluster.engine.output import KeptSamples, RunOutput, SampleSink
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.shard import Inbox, Reports, Shard
from mtia_cluster.engine.topology import Topology, build_topology, make_groups
from mtia_cluster.engine.windows import LoopHooks, LoopState, finish, run_windows


@dataclass(frozen=True)
class RunEnd:
    """How a streamed run ended: simulated span, fleet events applied, autoscale log."""

    end_ns: int
    fleet_events: list[dict[str, Any]]
    autoscale: list[dict[str, Any]]


class Simulation:
    """A scenario's fleet split into shards (default one); `run(trace)` replays a trace."""

    def __init__(
        self, scenario: Scenario, catalog: Catalog | None = None, shards: int | list[list[int]] = 1
    ) -> None:
        self.scenario = scenario
        self.catalog = catalog if catalog is not None else load_catalog()
        self.services = scenario.services
        self.regions = [r.name for r in scenario.regions]
        self.topology: Topology = build_topology(scenario, self.catalog)
        self.partition = _groups(self.topology.cells, shards)
        self.shards = [Shard(make_groups(self.topology, g)) for g in self.partition]
        self.shard_of_cell = np.zeros(self.topology.cells, dtype=np.int64)
        for i, g in enumerate(self.partition):
            self.shard_of_cell[g] = i
        groups = [group for shard in self.shards for group in shard.groups]
        self.plane = RoutingPlane(scenario, self.topology, groups)
        self.events = resolve_events(scenario.events, self.topology, scenario.report_interval_ns)
        self.autoscaler = build_autoscaler(self.topology, scenario.report_interval_ns)
        # accelerator ids of the last counters and the permutation sorting them (None: sorted)
        self._by_id: tuple[np.ndarray, np.ndarray | None] | None = None

    def run(
        self,
        trace: RequestBatch,
        progress: Callable[[int, int], None] | None = None,
        coalesce_idle: bool = True,
        devices: SampleSink | None = None,
    ) -> RunOutput:
        """Replay `trace` (sorted by arrival): every request's row and the device counters
        sampled every metrics interval (`mtia_cluster.results.summarize` makes the figures).

        `devices`: where the samples go as they come (`results.DeviceFold`: bounded
        memory); None keeps them in `RunOutput.samples` (engine/output.py `KeptSamples`).
        The sizes the trace fixes are checked first (`check_run`, up to its last arrival).
        `coalesce_idle=False` steps through every window (a check: results are the same).
        """
        if len(trace) and np.any(np.diff(trace.arrival_ns) < 0):
            raise ValueError("trace must be sorted by arrival_ns")
        last_ns = int(trace.arrival_ns[-1]) if len(trace) else 0
        span_ns = last_ns - int(trace.arrival_ns[0]) if len(trace) else 0
        check_run(self.scenario, span_ns, streamed=devices is not None, end_ns=last_ns)
        kept = KeptSamples(self.topology.accelerators, self.scenario.file)
        outputs: list[Completed] = []
        end = self.stream(
            [(trace, None)],
            outputs.append,
            kept if devices is None else devices,
            progress=progress,
            rows=len(trace),
            coalesce_idle=coalesce_idle,
        )
        return RunOutput(
            scenario=self.scenario,
            services=self.services,
            regions=self.regions,
            requests=sorted_by_request_id(outputs),
            samples=kept.samples,
            topology=self.topology,
            end_ns=end.end_ns,
            fleet_events=end.fleet_events,
            autoscale=end.autoscale,
            devices=devices,
        )

    def stream(
        self,
        chunks: Iterable[tuple[RequestBatch, int | None]],
        emit: Callable[[Completed], None],
        sample: Callable[[int, DeviceCounters], None],
        *,
        progress: Callable[[int, int], None] | None = None,
        rows: int = 0,
        coalesce_idle: bool = True,
    ) -> RunEnd:
        """Replay a trace given in chunks (each sorted by arrival, every row before its end,
        a window boundary; None: the last), handing finished rows to `emit` as they finish
        (original arrivals of retried requests restored, spilled rows annotated: final rows,
        in the order they finished) and the cumulative device counters to `sample` at t = 0
        and every metrics boundary. Nothing is kept: memory depends on the fleet and the
        window, not on the run's length. `rows`: the trace's row count (progress only)."""
        state, events, scaler = LoopState(), self.events, self.autoscaler
        router = self.plane.global_router

        def final(done: Completed) -> None:
            if len(done):
                done = events.restore_arrivals(done)
                emit(router.annotate(done) if router is not None else done)

        def advance(arrivals: RequestBatch, cell: np.ndarray, until_ns: int) -> list[Reports]:
            done, reports = self._advance_shards(arrivals, cell, until_ns)
            for part in done:
                final(part)
            return reports

        sample(0, self._counters())
        hooks = LoopHooks(
            advance=advance,
            sample=lambda t_ns: sample(t_ns, self._counters()),
            events=autoscale_hooks(
                fleet_event_hooks(events, self.plane, self._evict, final),
                scaler,
                self.plane,
                events,
                self._counters,
            ),
            coalesce_idle=coalesce_idle,
            quiet_until=self._quiet_until,
            span=None if scaler.groups else CompiledFleet.of(self.plane, self.shards, final),
        )
        before = 0
        if progress is not None:
            hooks.after_window = lambda: progress(before + state.lo, rows)
        for i, (chunk, end_ns) in enumerate(chunks):
            trace = self._served(chunk, final, first=i == 0)
            state.lo, hooks.stop_ns = 0, end_ns
            run_windows(self.plane, trace, state, hooks)
            before += len(chunk)
        finish(state, state.t, self.scenario.metrics_interval_ns, hooks.sample)
        autoscale = sorted(scaler.log, key=lambda e: (e["at_ns"], e["region"]))
        return RunEnd(state.t, list(events.log), autoscale)

    def _served(
        self, chunk: RequestBatch, emit: Callable[[Completed], None], first: bool
    ) -> RequestBatch:
        """The rows of `chunk` some region serves, regions assigned; the others are emitted
        as rejected at arrival. Rows without a region draw from one stream in trace order,
        so they must all come in the first chunk (a trace that has them is read whole)."""
        if not first and self.plane.global_router is None and np.any(chunk.region < 0):
            raise ValueError("rows without a region need the whole trace in one chunk")
        chunk = self.plane.assign_regions(chunk)
        served = self.plane.served(chunk)
        if served.all():
            return chunk
        emit(rejected_at_arrival(chunk.take(~served)))
        return chunk.take(served)

    def _advance_shards(
        self, arrivals: RequestBatch, cell: np.ndarray, until_ns: int
    ) -> tuple[list[Completed], list[Reports]]:
        """Advance every shard to `until_ns` with its cells' share of the window's arrivals:
        the requests that finished and each shard's load reports."""
        done_parts, reports = [], []
        for i, shard in enumerate(self.shards):
            if len(self.shards) == 1:
                inbox = Inbox(arrivals, cell)
            else:
                mine = np.flatnonzero(self.shard_of_cell[cell] == i)
                inbox = Inbox(arrivals.take(mine), cell[mine])
            done, shard_reports = shard.advance(inbox, until_ns)
            done_parts.append(done)
            reports.append(shard_reports.arrays())
        return done_parts, reports

    def _evict(self, cells: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        """Cells fail at `at_ns`: the requests they held and the cell of each."""
        parts = [shard.evict(cells, at_ns) for shard in self.shards]
        return RequestBatch.concat([b for b, _ in parts]), np.concatenate([c for _, c in parts])

    def _quiet_until(self) -> int | None:
        """The earliest time a request in flight may finish (None: not known; Shard)."""
        bounds = [s.quiet_until() for s in self.shards]
        known = [b for b in bounds if b is not None]
        return min(known) if known and len(known) == len(bounds) else None

    def _counters(self) -> DeviceCounters:
        """Every accelerator's counters, by accelerator id. The shards list their
        accelerators in a fixed order, so the permutation is found once; when they are in
        order already (one shard, one group per kind of pool: the usual fleet) nothing is
        permuted (a take of every counter column of 115,200 accelerators costs ~16 ms)."""
        parts = DeviceCounters.concat([s.device_counters() for s in self.shards])
        ids = parts.accelerator_id
        known = self._by_id
        if known is None or not (known[0] is ids or np.array_equal(known[0], ids)):
            perm = np.argsort(ids, kind="stable")
            known = self._by_id = (ids, None if np.all(perm == np.arange(len(ids))) else perm)
        order = known[1]
        return parts if order is None else parts.take(order)


def _groups(n_cells: int, shards: int | list[list[int]]) -> list[list[int]]:
    """Cell ids per shard: `shards` round-robin groups, or an explicit partition."""
    if isinstance(shards, int):
        k = max(1, min(shards, n_cells))
        return [list(range(i, n_cells, k)) for i in range(k)]
    flat = sorted(c for g in shards for c in g)
    if flat != list(range(n_cells)):
        raise ValueError("shards must partition the cell ids")
    return [list(g) for g in shards if g]
