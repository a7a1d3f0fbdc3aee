"""Single-process runner: drives every shard window by window over a trace.

Per window ``[t, t + report_interval)``: each (region, service) router sends the window's
arrivals to its cells using the reports from the previous boundary plus its own counts;
each shard advances to the window's end; the new reports refresh the routers. Device
counters are sampled every ``metrics_interval``. After the last arrival, windows continue
until every request has finished. The loop itself is engine/windows.py's `run_windows`
(idle windows coalesced, fleet events applied at window boundaries), which the distributed
runner also runs, in a coordinator or in region-owning shards.

Requests without a region (trace region -1) are spread over the regions that serve their
service, in proportion to the regions' weights, from one seeded stream in trace order. A
request whose region has no pool for its service is returned with status ``rejected``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.config.scenario import Scenario
from mtia_cluster.engine.capacity import routing_capacity
from mtia_cluster.engine.cell import (
    Completed,
    DeviceCounters,
    RequestBatch,
    rejected_at_arrival,
    sorted_by_request_id,
)
from mtia_cluster.engine.events import resolve_events
from mtia_cluster.engine.global_routing import GlobalRouter, region_load
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.rng import KIND_ROUTER, KIND_WORKLOAD, entity_rng
from mtia_cluster.engine.router import Router
from mtia_cluster.engine.shard import Inbox, Shard
from mtia_cluster.engine.topology import Topology, build_topology, make_groups
from mtia_cluster.engine.windows import EventHooks, LoopState, finish, run_windows


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
        self.outstanding = np.zeros(self.topology.cells, dtype=np.int64)
        self.capacity = np.zeros(self.topology.cells, dtype=np.float64)
        self.routing_capacity = np.zeros(self.topology.cells, dtype=np.float64)
        for shard in self.shards:
            for group in shard.groups:
                self.capacity[group.cell_ids] = group.capacity()
                self.routing_capacity[group.cell_ids] = routing_capacity(group)
        self.routers = self._routers()
        self.global_router = make_global_router(scenario, self.routers)  # #16, None: islands
        self.events = resolve_events(scenario.events, self.topology, scenario.report_interval_ns)

    def _routers(self) -> dict[tuple[int, int], Router]:
        region = np.asarray(self.topology.cell_region)
        service = np.asarray(self.topology.cell_service)
        routers = {}
        for r, s in sorted(set(zip(region.tolist(), service.tolist(), strict=True))):
            cells = np.flatnonzero((region == r) & (service == s))
            routers[(r, s)] = Router(
                self.scenario.policy,
                cells,
                self.capacity[cells],
                entity_rng(self.scenario.seed, KIND_ROUTER, r, s),
                self.scenario.router_weights,
                self.routing_capacity[cells],
            )
        return routers

    def assign_regions(self, trace: RequestBatch) -> RequestBatch:
        """Fill region -1 by the regions' weights among those serving the service."""
        missing = trace.region < 0
        if not missing.any() or self.global_router is not None:  # spill: placed per window
            return trace
        region = trace.region.copy()
        rng = entity_rng(self.scenario.seed, KIND_WORKLOAD, 0)
        u = rng.random(int(missing.sum()))
        svc = trace.service[missing]
        out = np.full(len(svc), -1, dtype=np.int32)
        for s in range(len(self.services)):
            weights = np.array(
                [
                    r.weight if any(p.service == self.services[s] for p in r.pools) else 0.0
                    for r in self.scenario.regions
                ]
            )
            if weights.sum() <= 0:
                continue
            cum = np.cumsum(weights) / weights.sum()
            rows = svc == s
            out[rows] = np.minimum(np.searchsorted(cum, u[rows], side="right"), len(cum) - 1)
        region[missing] = out
        return RequestBatch(**{**trace.columns(), "region": region})

    def run(
        self,
        trace: RequestBatch,
        progress: Callable[[int, int], None] | None = None,
        coalesce_idle: bool = True,
    ) -> RunOutput:
        """Replay `trace` (sorted by arrival): every request's row and the device counters
        sampled every metrics interval (`mtia_cluster.results.summarize` makes the figures).

        `coalesce_idle=False` steps through every window (a check: results are the same).
        """
        if len(trace) and np.any(np.diff(trace.arrival_ns) < 0):
            raise ValueError("trace must be sorted by arrival_ns")
        trace = self.assign_regions(trace)
        served = self._served(trace)
        rejected = trace.take(~served)
        if not served.all():
            trace = trace.take(served)
        outputs = [rejected_at_arrival(rejected)]
        samples: list[tuple[int, DeviceCounters]] = [(0, self._counters())]
        state = LoopState()
        events = self.events

        def advance(arrivals: RequestBatch, cell: np.ndarray, until_ns: int) -> None:
            outputs.extend(self._advance_shards(arrivals, cell, until_ns))

        def sample(t_ns: int) -> None:
            samples.append((t_ns, self._counters()))

        def after_window() -> None:
            if progress is not None:
                progress(state.lo, len(trace))

        def apply_due(t_ns: int) -> RequestBatch:
            retry, failed = events.apply_due(t_ns, self.routers.values(), self._evict)
            outputs.append(failed)
            return retry

        hooks = EventHooks(
            events.next_boundary,
            apply_due,
            lambda batch: outputs.append(rejected_at_arrival(batch)),
        )
        run_windows(self, trace, state, advance, sample, None, coalesce_idle, after_window, hooks)
        finish(state, state.t, self.scenario.metrics_interval_ns, sample)
        requests = events.restore_arrivals(sorted_by_request_id(outputs))
        if self.global_router is not None:
            requests = self.global_router.annotate(requests)
        return RunOutput(
            scenario=self.scenario,
            services=self.services,
            regions=self.regions,
            requests=requests,
            samples=samples,
            topology=self.topology,
            end_ns=state.t,
            fleet_events=list(events.log),
        )

    def _advance_shards(
        self, arrivals: RequestBatch, cell: np.ndarray, until_ns: int
    ) -> list[Completed]:
        """Advance every shard to `until_ns` with its cells' share of the window's arrivals."""
        done_parts = []
        for i, shard in enumerate(self.shards):
            if len(self.shards) == 1:
                inbox = Inbox(arrivals, cell)
            else:
                mine = np.flatnonzero(self.shard_of_cell[cell] == i)
                inbox = Inbox(arrivals.take(mine), cell[mine])
            done, reports = shard.advance(inbox, until_ns)
            done_parts.append(done)
            self.take_reports(*reports.arrays())
        return done_parts

    def take_reports(
        self,
        cell_id: np.ndarray,
        outstanding: np.ndarray,
        capacity: np.ndarray,
        prefix_cell: np.ndarray,
        prefix_hash: np.ndarray,
        prefix_sign: np.ndarray,
    ) -> None:
        """A shard's reports at a window boundary (``LoadReports.arrays()``): loads and
        capacities for every router, prefix-cache events for the routers of their cells."""
        self.outstanding[cell_id] = outstanding
        self.capacity[cell_id] = capacity
        if not len(prefix_cell):
            return
        region = np.asarray(self.topology.cell_region)[prefix_cell]
        service = np.asarray(self.topology.cell_service)[prefix_cell]
        key = region.astype(np.int64) * len(self.services) + service
        for k in np.unique(key).tolist():
            rows = key == k
            router = self.routers[(k // len(self.services), k % len(self.services))]
            router.apply_prefix_events(prefix_cell[rows], prefix_hash[rows], prefix_sign[rows])

    def _evict(self, cells: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        """Cells fail at `at_ns`: the requests they held and the cell of each."""
        parts = [shard.evict(cells, at_ns) for shard in self.shards]
        self.outstanding[cells] = 0
        return RequestBatch.concat([b for b, _ in parts]), np.concatenate([c for _, c in parts])

    def _served(self, trace: RequestBatch) -> np.ndarray:
        if self.global_router is not None:  # any region serving the service may serve it
            return np.isin(trace.service, [s for _, s in self.routers])
        keys = np.array([r * len(self.services) + s for r, s in self.routers])
        return np.isin(trace.region.astype(np.int64) * len(self.services) + trace.service, keys)

    def route_window(self, window: RequestBatch) -> tuple[RequestBatch, np.ndarray]:
        """The window's requests, each with the region that serves it, and the global cell
        id of each (arrival order; -1: no available cell). Without global routing the
        regions are the rows' own; with it (engine/global_routing.py) the global router
        picks the region first, so cells see the region they serve in."""
        if self.global_router is None or len(window) == 0:
            return window, self._route_regions(window)
        view = region_load(self.routers, self.outstanding, (len(self.regions), len(self.services)))
        window, dest = self.global_router.place(window, view)
        if not np.any(dest < 0):
            return window, self._route_regions(window)
        cell = np.full(len(window), -1, dtype=np.int64)  # -1: no live cell anywhere
        cell[dest >= 0] = self._route_regions(window.take(dest >= 0))
        return window, cell

    def _route_regions(self, window: RequestBatch) -> np.ndarray:
        """Global cell id per request by its region's router (arrival order)."""
        cell = np.empty(len(window), dtype=np.int64)
        if len(window) == 0:
            return cell
        if len(self.routers) == 1:
            (router,) = self.routers.values()
            cell[:] = router.route(len(window), window if router.needs_requests else None)
            return cell
        key = window.region.astype(np.int64) * len(self.services) + window.service
        for k in np.unique(key).tolist():
            rows = np.flatnonzero(key == k)
            router = self.routers[(k // len(self.services), k % len(self.services))]
            cell[rows] = router.route(
                len(rows), window.take(rows) if router.needs_requests else None
            )
        return cell

    def _counters(self) -> DeviceCounters:
        parts = DeviceCounters.concat([s.device_counters() for s in self.shards])
        return parts.take(np.argsort(parts.accelerator_id, kind="stable"))


def make_global_router(
    scenario: Scenario, routers: dict[tuple[int, int], Router]
) -> GlobalRouter | None:
    """The scenario's global router (policy spill), None when regions are islands."""
    spec = scenario.global_routing
    if spec is None or spec.policy != "spill":
        return None
    fallback = np.zeros(len(scenario.services), dtype=np.int64)
    for r, s in sorted(routers, reverse=True):
        fallback[s] = r  # the lowest-index region serving each service
    return GlobalRouter(spec, fallback)


def _groups(n_cells: int, shards: int | list[list[int]]) -> list[list[int]]:
    """Cell ids per shard: `shards` round-robin groups, or an explicit partition."""
    if isinstance(shards, int):
        k = max(1, min(shards, n_cells))
        return [list(range(i, n_cells, k)) for i in range(k)]
    flat = sorted(c for g in shards for c in g)
    if flat != list(range(n_cells)):
        raise ValueError("shards must partition the cell ids")
    return [list(g) for g in shards if g]
