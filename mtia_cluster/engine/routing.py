"""The routing plane: every (region, service) router of a fleet and the load reports they read.

The plane is the routing layer of a replay, separate from the cells (which a shard holds, in
this process or another): it gives requests without a region their region
(:meth:`RoutingPlane.assign_regions`), tells which requests some region serves
(:meth:`~RoutingPlane.served`), sends each window's arrivals to cells
(:meth:`~RoutingPlane.route`) and takes the cells' load reports at the window's end
(:meth:`~RoutingPlane.refresh`). It holds no cell, so a region-owning shard builds one for
the fleet's ids alone, and the window loop (engine/windows.py) drives it the same way in
every process.

Requests without a region (trace region -1) are spread over the regions that serve their
service, in proportion to the regions' weights, from one seeded stream in trace order. Under
global routing (scenario ``global_routing.policy: spill``) :meth:`~RoutingPlane.place` picks
each window's serving regions first, rows without a region included (#16).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mtia_cluster.config.scenario import Scenario
from mtia_cluster.engine.capacity import routing_capacity
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.global_routing import make_global_router, region_load
from mtia_cluster.engine.group import CellGroup
from mtia_cluster.engine.least_loaded import route_ranges, two_choices_ranges
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.router import Router
from mtia_cluster.engine.shard import Reports
from mtia_cluster.engine.topology import Topology


class RoutingPlane:
    """The routers of every (region, service) with cells, over the fleet's global cell ids.

    `outstanding` and `capacity` (one entry per global cell) are the last reports; `groups`
    are the cell groups whose capacity is known before the first report (the cells this
    process holds: all of them in one process, a region shard's own in a shard)."""

    def __init__(self, scenario: Scenario, topology: Topology, groups: Iterable[CellGroup]) -> None:
        self.scenario = scenario
        self.topology = topology
        self.services = scenario.services
        self.regions = [r.name for r in scenario.regions]
        self.outstanding = np.zeros(topology.cells, dtype=np.int64)
        self.capacity = np.zeros(topology.cells, dtype=np.float64)
        self.routing_capacity = np.zeros(topology.cells, dtype=np.float64)
        # what the routers read: `outstanding` as of the last refresh (fleet events zero
        # evicted cells in `outstanding` at a boundary, engine/events.py; the routers see
        # that from the next refresh on) and what the routers sent since
        self.reported = np.zeros(topology.cells, dtype=np.int64)
        self.sent = np.zeros(topology.cells, dtype=np.int64)
        for group in groups:
            self.capacity[group.cell_ids] = group.capacity()
            self.routing_capacity[group.cell_ids] = routing_capacity(group)
        self._cell_region = np.asarray(topology.cell_region)
        self._cell_service = np.asarray(topology.cell_service)
        self.routers = self._routers()
        self._ranges = RouterRanges.share(self)
        self._routed: list[np.ndarray] = []  # cells routed to since the last reports
        self._seen_ids: tuple[np.ndarray | None, bool] = (None, False)  # see _every_cell
        # cross-region routing (engine/global_routing.py, #16); None: regions are islands
        self.global_router = make_global_router(scenario, self.routers)

    def _routers(self) -> dict[tuple[int, int], Router]:
        region, service = self._cell_region, self._cell_service
        routers = {}
        for r, s in sorted(set(zip(region.tolist(), service.tolist(), strict=True))):
            cells = np.flatnonzero((region == r) & (service == s))
            routers[(r, s)] = Router(
                self.scenario.policy,
                cells,
                self.capacity[cells],
                entity_rng(self.scenario.seed, StreamKind.ROUTER, r, s),
                self.scenario.router_weights,
                self.routing_capacity[cells],
            )
        return routers

    @property
    def reads_reports(self) -> bool:
        """Some router's choices depend on load reports (so on where windows are cut); the
        global router reads them (region load) whenever there is one."""
        if self.global_router is not None:
            return True
        return any(r.needs_reports for r in self.routers.values())

    def assign_regions(self, trace: RequestBatch) -> RequestBatch:
        """Fill region -1 by the regions' weights among those serving the service."""
        missing = trace.region < 0
        if not missing.any() or self.global_router is not None:  # spill: placed per window
            return trace
        region = trace.region.copy()
        rng = entity_rng(self.scenario.seed, StreamKind.WORKLOAD, 0)
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

    def served(self, trace: RequestBatch) -> np.ndarray:
        """bool per row: its region has cells for its service (else it is rejected); under
        global routing, some region has cells for its service."""
        # a lookup table (region, service) -> served, its last row for region -1 (no region
        # serves the row's service): one gather per row (np.isin sorted every chunk's keys)
        table = np.zeros((len(self.regions) + 1, len(self.services)), dtype=bool)
        for r, s in self.routers:
            table[r, s] = True
        if self.global_router is not None:
            return np.logical_or.reduce(table, axis=0)[trace.service]
        return table[trace.region, trace.service]

    def place(self, window: RequestBatch) -> RequestBatch:
        """The window's requests with `region` set to the region that serves each: their
        own, or the global router's choice (engine/global_routing.py) from the region
        availability and load reports of this boundary. Cells see the serving region."""
        if self.global_router is None or len(window) == 0:
            return window
        view = region_load(self.routers, self.outstanding, (len(self.regions), len(self.services)))
        return self.global_router.place(window, view)

    def route(self, window: RequestBatch) -> np.ndarray:
        """Global cell id for each request of the window (arrival order); -1 where the
        request's region has no available cell (fleet events)."""
        if len(window) == 0:
            return np.empty(0, dtype=np.int64)
        if self._ranges.fast and all(r.all_up for r in self.routers.values()):
            cell = self._ranges.route(self, window)
        else:
            cell = self._route_each(window)
        self._routed.append(cell.copy())  # the caller may reuse `cell`
        return cell

    def compiled_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(first cell, end cell per router, router index per key region * services +
        service, -1: none) when the next window's choices can be made by engine/llm/fleet.py
        in compiled code over the report arrays, refreshed by copying them
        (``least_outstanding`` or ``round_robin`` over contiguous candidates, all
        available, no global router, nothing routed since the last reports), else None."""
        ranges = self._ranges
        if self.global_router is not None or not ranges.compiled:
            return None
        if self._routed or not all(r.all_up for r in self.routers.values()):
            return None
        return ranges.lo, ranges.hi, ranges.index

    def round_robin_next(self) -> np.ndarray:
        """Each router's next round-robin candidate (local index), by router index (see
        `compiled_ranges`)."""
        return np.array([r.state.next_rr for r in self._ranges.routers], np.int64)

    def set_round_robin_next(self, nxt: np.ndarray) -> None:
        """Take back `round_robin_next` after routing elsewhere (compiled code)."""
        for router, value in zip(self._ranges.routers, nxt.tolist(), strict=True):
            router.state.next_rr = value

    def _route_each(self, window: RequestBatch) -> np.ndarray:
        """Every router's rows through its policy (`Router.route`), in arrival order."""
        cell = np.empty(len(window), dtype=np.int64)
        if len(self.routers) == 1:
            (router,) = self.routers.values()
            cell[:] = router.route(len(window), window if router.needs_requests else None)
            return cell
        key = window.region.astype(np.int64) * len(self.services) + window.service
        order = np.argsort(key, kind="stable")  # rows by router, arrival order kept
        bounds = np.flatnonzero(np.diff(key[order])) + 1
        for rows in np.split(order, bounds):
            router = self._router_of_key(int(key[rows[0]]))
            cell[rows] = router.route(
                len(rows), window.take(rows) if router.needs_requests else None
            )
        return cell

    def refresh(self, reports: Iterable[Reports]) -> None:
        """The window's end: take the load reports of the shards advanced in it
        (``LoadReports.arrays()`` each), then refresh the routers (own counts restart).
        Routers whose candidates are a contiguous range of cells read the plane's arrays
        (shared views), so this costs one copy of the outstanding counts and clears the
        sent counts of the cells routed to since the last reports, whatever the routers."""
        for cell_id, outstanding, capacity, *prefix in reports:
            if self._every_cell(cell_id):  # one shard reporting every cell, in order
                np.copyto(self.outstanding, outstanding)
                np.copyto(self.capacity, capacity)
            else:
                self.outstanding[cell_id] = outstanding
                self.capacity[cell_id] = capacity
            self._prefix_events(*prefix)
        np.copyto(self.reported, self.outstanding)  # one copy (evictions included), not per router
        for cells in self._routed:
            self.sent[cells] = 0  # a -1 (routed nowhere) clears a count that must be 0 too
        self._routed.clear()
        for router in self._ranges.unshared:
            router.refresh(self.reported[router.cells], self.capacity[router.cells])

    def _every_cell(self, cell_id: np.ndarray) -> bool:
        """`cell_id` lists every cell in order (checked once per array: a shard reports
        with the same id array every window)."""
        if cell_id is self._seen_ids[0]:
            return self._seen_ids[1]
        every = len(cell_id) == len(self.outstanding) and bool(
            np.array_equal(cell_id, np.arange(len(cell_id)))
        )
        self._seen_ids = (cell_id, every)
        return every

    def saved_state(self) -> tuple:
        """What a checkpoint keeps of the plane (distributed/region_worker.py): the routers
        (policy state, streams, available cells) and the report arrays they read."""
        return self.routers, self.outstanding, self.reported, self.capacity, self.sent

    def restore_state(self, saved: tuple) -> None:
        """Take back a `saved_state` (unpickled: the routers' arrays no longer share this
        plane's, so they are shared again)."""
        self.routers, outstanding, reported, capacity, sent = saved
        for mine, theirs in zip(
            (self.outstanding, self.reported, self.capacity, self.sent),
            (outstanding, reported, capacity, sent),
            strict=True,
        ):
            np.copyto(mine, theirs)
        self._ranges = RouterRanges.share(self)

    def _prefix_events(self, cell: np.ndarray, hashes: np.ndarray, signs: np.ndarray) -> None:
        """Prefix-cache events go to the routers of their cells (KV-aware policies)."""
        if not len(cell):
            return
        key = self._cell_region[cell].astype(np.int64) * len(self.services)
        key += self._cell_service[cell]
        for k in np.unique(key).tolist():
            rows = key == k
            self._router_of_key(k).apply_prefix_events(cell[rows], hashes[rows], signs[rows])

    def _router_of_key(self, key: int) -> Router:
        return self.routers[(key // len(self.services), key % len(self.services))]


@dataclass(frozen=True)
class RouterRanges:
    """The plane's routers whose candidates are a contiguous range of cell ids share the
    plane's report arrays (``Router.share``); `fast`: every router does and the policy is
    ``least_outstanding`` or ``p2c``, so a window is routed in one compiled call
    (engine/least_loaded.py; p2c draws from each router's own stream first), with the same
    choices as router by router."""

    lo: np.ndarray  # int64 per router: first cell id
    hi: np.ndarray  # int64 per router: last cell id + 1
    index: np.ndarray  # int64 per key region * services + service: router index, -1: none
    unshared: tuple[Router, ...]  # refreshed by copies
    fast: bool
    routers: tuple[Router, ...]  # by router index
    two_choices: bool  # p2c (else least_outstanding)
    compiled: bool  # every router contiguous, least_outstanding or round_robin (fleet.py)

    @classmethod
    def share(cls, plane: RoutingPlane) -> RouterRanges:
        """Share the plane's arrays with every router of contiguous cells."""
        services = len(plane.services)
        index = np.full(len(plane.regions) * services, -1, dtype=np.int64)
        lo, hi, unshared = [], [], []
        for i, ((r, s), router) in enumerate(plane.routers.items()):
            index[r * services + s] = i
            a, b = int(router.cells[0]), int(router.cells[-1]) + 1
            lo.append(a)
            hi.append(b)
            if b - a != len(router.cells):
                unshared.append(router)
                continue
            router.share(plane.reported[a:b], plane.capacity[a:b], plane.sent[a:b])
        policy = plane.scenario.policy
        fast = not unshared and policy in ("least_outstanding", "p2c")
        return cls(
            np.array(lo, np.int64), np.array(hi, np.int64), index, tuple(unshared), fast,
            tuple(plane.routers.values()), policy == "p2c",
            not unshared and policy in ("least_outstanding", "round_robin"),
        )  # fmt: skip

    def route(self, plane: RoutingPlane, window: RequestBatch) -> np.ndarray:
        """Every row's cell, every router at once (only when `fast`)."""
        if len(self.lo) == 1:
            router = np.zeros(len(window), dtype=np.int64)
        else:
            key = window.region.astype(np.int64) * len(plane.services) + window.service
            if key.min() < 0 or key.max() >= len(self.index) or self.index[key].min() < 0:
                raise KeyError("a request's (region, service) has no router")
            router = self.index[key]
        cell = np.empty(len(window), dtype=np.int64)
        if self.two_choices:
            first, second = self._draws(router)
            two_choices_ranges(router, first, second, self.lo, plane.reported, plane.sent, cell)
        else:
            route_ranges(router, self.lo, self.hi, plane.reported, plane.sent, cell)
        return cell

    def _draws(self, router: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p2c's two distinct candidates per row (local indices), drawn by each router from
        its own stream for its rows in arrival order, as ``router.p2c`` draws them."""
        first = np.zeros(len(router), dtype=np.int64)
        second = np.zeros(len(router), dtype=np.int64)
        order = np.argsort(router, kind="stable")
        for rows in np.split(order, np.flatnonzero(np.diff(router[order])) + 1):
            state = self.routers[int(router[rows[0]])].state
            k = len(state.outstanding)
            if k > 1:  # one candidate: both 0, nothing drawn
                drawn = state.rng.integers(0, k, size=len(rows))
                first[rows] = drawn
                second[rows] = (drawn + state.rng.integers(1, k, size=len(rows))) % k
        return first, second
