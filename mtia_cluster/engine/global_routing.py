"""The global router: which region serves each request, before the region routers pick cells.

Policy ``spill`` (scenario ``global_routing``; docs/network.md): a request goes to its home
region (its trace region) when that region has a live cell for its service and headroom;
otherwise to the nearest region (by RTT; ties: lowest index) with a live cell and headroom;
if no region has headroom, home when it is live, else the nearest live region; if no region
has a live cell for the service, nowhere (rejected). Headroom: outstanding requests per live
cell below ``spill_outstanding_per_cell`` (none given: every live region has headroom, so
only outages spill). A request without a region (trace region -1) goes to the live region
with the fewest outstanding requests per live cell (ties: lowest index), with no RTT.

Staleness rule (placement independence, as for the region routers' stale reports): a
window's decisions read only (1) which cells are available, as fleet events left them at the
window's start boundary, (2) the cells' outstanding counts reported at that boundary, and (3)
the router's own sends in this window, counted request by request in arrival order. All three
are the same for any sharding of the cells, so ``simulate`` equals ``replay``.

A request served away from home pays the round trip between the two regions: its row keeps
the serving region (``region``), records ``origin_region`` and ``spill_rtt_ns``, and its
first token and finish are ``spill_rtt_ns`` later (the destination serves it from its
arrival: the decision is taken at the window boundary, not after a one-way delay).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from mtia_cluster.config.network import GlobalRoutingSpec
from mtia_cluster.engine.cell import Completed, RequestBatch
from mtia_cluster.engine.router import Router


@dataclass(frozen=True)
class RegionLoad:
    """Per (region, service), at a window boundary: live cells and their outstanding sum."""

    live: np.ndarray  # int64 [R, S]
    outstanding: np.ndarray  # float64 [R, S]


def region_load(
    routers: Mapping[tuple[int, int], Router], outstanding: np.ndarray, shape: tuple[int, int]
) -> RegionLoad:
    """The boundary view: available cells of each router and their reported outstanding."""
    live = np.zeros(shape, dtype=np.int64)
    out = np.zeros(shape, dtype=np.float64)
    for (r, s), router in routers.items():
        up = router.cells[router.available]
        live[r, s] = len(up)
        out[r, s] = float(outstanding[up].sum())
    return RegionLoad(live, out)


def nearest_order(rtt_ns: np.ndarray) -> np.ndarray:
    """Per region, every region by increasing RTT (ties: lowest index; itself first)."""
    n = len(rtt_ns)
    order = np.empty((n, n), dtype=np.int64)
    for r in range(n):
        order[r] = np.lexsort((np.arange(n), rtt_ns[r]))
    return order


@njit(cache=True)
def _place(
    home: np.ndarray,
    service: np.ndarray,
    live: np.ndarray,
    load: np.ndarray,
    order: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """Serving region per request, in arrival order (-1: no live region); `load` counts
    this window's sends (see the module doc for the rule)."""
    dest = np.empty(home.shape[0], dtype=np.int64)
    n_regions = live.shape[0]
    for i in range(home.shape[0]):
        s, h, d = service[i], home[i], -1
        if h >= 0:
            for j in order[h]:
                if live[j, s] > 0 and load[j, s] < threshold * live[j, s]:
                    d = j
                    break
            if d < 0:
                if live[h, s] > 0:
                    d = h
                else:
                    for j in order[h]:
                        if live[j, s] > 0:
                            d = j
                            break
        else:
            best = 0.0
            for j in range(n_regions):
                if live[j, s] > 0 and (d < 0 or load[j, s] / live[j, s] < best):
                    d, best = j, load[j, s] / live[j, s]
        if d >= 0:
            load[d, s] += 1.0
        dest[i] = d
    return dest


@dataclass
class GlobalRouter:
    """Region choice per window (policy ``spill``) and the spill record of moved requests."""

    spec: GlobalRoutingSpec
    serves: np.ndarray  # bool [R, S]: the region has cells (a router) for the service
    rtt_ns: np.ndarray = field(init=False)  # int64 [R, R]
    order: np.ndarray = field(init=False)
    fallback: np.ndarray = field(init=False)
    # request id -> (home or -1, region of its row, served there: pays the RTT) of the
    # requests whose row region is not their own
    placed: dict[int, tuple[int, int, bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rtt_ns = self.spec.rtt.rtt_ns
        self.order = nearest_order(self.rtt_ns)
        # per service: where a request that no live region can take is reported rejected
        # when its home has no cells for the service (or it has none): the lowest-index
        # region serving the service
        self.fallback = np.argmax(self.serves, axis=0).astype(np.int64)

    def place(self, window: RequestBatch, view: RegionLoad) -> RequestBatch:
        """The window with `region` set to the serving region. A request no live region
        can take keeps its home when the home has cells for its service, else goes to the
        service's fallback region; either way its region's router finds no available cell
        and the request is rejected (never lost)."""
        if len(window) == 0:
            return window
        home = self.homes(window)
        limit = self.spec.spill_outstanding_per_cell
        threshold = np.inf if limit is None else float(limit)
        service = window.service.astype(np.int64)
        dest = _place(home, service, view.live, view.outstanding.copy(), self.order, threshold)
        stay = (home >= 0) & self.serves[np.maximum(home, 0), service]
        shown = np.where(dest >= 0, dest, np.where(stay, home, self.fallback[service]))
        self._record(window.request_id, home, shown, dest >= 0)
        region = shown.astype(np.int32)
        if np.array_equal(region, window.region):
            return window
        return RequestBatch(**{**window.columns(), "region": region})

    def homes(self, window: RequestBatch) -> np.ndarray:
        """Each row's home region (-1: none): its region, or the home it left for a request
        placed before (a retried request evicted from a failed cell)."""
        home = window.region.astype(np.int64)
        if self.placed:
            ids = window.request_id.tolist()
            home = np.array(
                [self.placed.get(i, (h,))[0] for i, h in zip(ids, home.tolist(), strict=True)],
                dtype=np.int64,
            )
        return home

    def _record(
        self, ids: np.ndarray, home: np.ndarray, shown: np.ndarray, served: np.ndarray
    ) -> None:
        """Remember (home, row region, served there) of every row whose region changes;
        forget the others (a request placed at home after an earlier spill)."""
        moved = shown != home
        if self.placed:
            for i in ids[~moved].tolist():
                self.placed.pop(i, None)
        rows = zip(
            ids[moved].tolist(),
            home[moved].tolist(),
            shown[moved].tolist(),
            served[moved].tolist(),
            strict=True,
        )
        for i, h, d, ok in rows:
            self.placed[i] = (h, d, ok)

    def annotate(self, rows: Completed) -> Completed:
        """Final rows: a placed request gets its row region, its origin (home; the row
        region when it had none) and, when served away from home, the RTT in spill_rtt_ns,
        first token and finish (not when rejected for want of any live region). Each
        request's record is dropped."""
        if not self.placed or len(rows) == 0:
            return rows
        ids = rows.request_id.tolist()
        got = [self.placed.pop(i, None) for i in ids]
        hit = np.array([g is not None for g in got])
        if not hit.any():
            return rows
        home = np.array([g[0] if g else -1 for g in got], dtype=np.int64)
        dest = np.array([g[1] if g else -1 for g in got], dtype=np.int64)
        paid = np.array([bool(g and g[2]) for g in got])
        known = hit & (home >= 0)
        away = known & paid
        rtt = np.zeros(len(rows), dtype=np.int64)
        rtt[away] = self.rtt_ns[home[away], dest[away]]
        region = np.where(hit, dest, rows.region).astype(np.int32)
        return Completed(
            **{
                **rows.columns(),
                "region": region,
                "origin_region": np.where(known, home, region).astype(np.int32),
                "spill_rtt_ns": rtt,
                "network_ns": rows.network_ns + rtt,
                "first_token_ns": rows.first_token_ns + rtt,
                "finish_ns": rows.finish_ns + rtt,
            }
        )


def make_global_router(
    scenario: Any, routers: Mapping[tuple[int, int], Router]
) -> GlobalRouter | None:
    """The scenario's global router (policy spill), None when regions are islands."""
    spec = scenario.global_routing
    if spec is None or spec.policy != "spill":
        return None
    serves = np.zeros((len(scenario.regions), len(scenario.services)), dtype=bool)
    for r, s in routers:
        serves[r, s] = True
    return GlobalRouter(spec, serves)


def spill_counts(rows: Iterable[Completed]) -> dict[tuple[int, int], int]:
    """(origin, serving region) -> requests served away from home (a test helper and the
    check of the summary's figures)."""
    out: dict[tuple[int, int], int] = {}
    for part in rows:
        moved = part.spill_rtt_ns > 0
        pairs = zip(part.origin_region[moved].tolist(), part.region[moved].tolist(), strict=True)
        for o, d in pairs:
            out[(o, d)] = out.get((o, d), 0) + 1
    return out
