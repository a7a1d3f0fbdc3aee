"""Fleet events inside a replay: failures, repairs, drains and undrains of hosts and racks.

Scenario syntax and meaning: :mod:`mtia_cluster.config.events`. Here the events are resolved
to cells and applied by the window loop at window boundaries: an event at ``at_ns`` takes
effect at the first boundary ``t >= at_ns`` (boundaries are multiples of the report interval,
a few ms), where every cell's state is exact.

* ``drain``/``undrain``: the routers stop/start sending to the cells; in-flight work goes on.
* ``fail``: the routers stop sending; every request the cells hold (queued, in preprocessing,
  batched or running) leaves them (``evict``). With ``retry`` these requests are routed again
  at ``t`` to the region's other cells, ahead of the window's arrivals, and their rows keep
  the original ``arrival_ns`` (latency includes the lost work); with ``fail`` they are
  returned with status ``failed`` at ``t``. Busy time on the failed accelerators stops at
  ``t``. Nothing is lost or duplicated (tested).
* ``repair``: the cells (already empty) are routed to again, unless drained. A cell serves
  when it is neither failed nor drained: ``undrain`` does not repair a failed cell.

Requests that find no available cell in their region are rejected at arrival, as for a
region that does not serve the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.config.events import EventSpec
from mtia_cluster.engine.cell import (
    STATUS_FAILED,
    Completed,
    RequestBatch,
    completed_from,
    rejected_at_arrival,
)
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.windows import EventHooks
from mtia_cluster.errors import UserError

# evict(global cell ids, t_ns) -> (requests they held, in arrival order; cell of each)
Evict = Callable[[np.ndarray, int], tuple[RequestBatch, np.ndarray]]


@dataclass(frozen=True)
class ResolvedEvent:
    spec: EventSpec
    cells: np.ndarray  # global cell ids, sorted


@dataclass
class FleetEvents:
    """A scenario's events resolved to cells, applied in time order, with their log."""

    events: list[ResolvedEvent]
    step_ns: int
    failed: np.ndarray  # bool per global cell
    drained: np.ndarray  # bool per global cell
    applied: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    original_arrival: dict[int, int] = field(default_factory=dict)  # retried request ids

    def next_boundary(self) -> int | None:
        """The window boundary at which the next event takes effect (None: no more)."""
        if self.applied >= len(self.events):
            return None
        at = self.events[self.applied].spec.at_ns
        return -(-at // self.step_ns) * self.step_ns

    def apply_due(self, t_ns: int, routers: Any, evict: Evict) -> tuple[RequestBatch, Completed]:
        """Apply every event due at boundary `t_ns`. Returns the requests to route again at
        `t_ns` (arrival set to `t_ns`, sorted by request id) and the requests failed now."""
        retry: list[RequestBatch] = []
        failed: list[Completed] = []
        while (b := self.next_boundary()) is not None and b <= t_ns:
            ev = self.events[self.applied]
            self.applied += 1
            kind = ev.spec.kind
            if kind in ("fail", "repair"):
                self.failed[ev.cells] = kind == "fail"
            else:
                self.drained[ev.cells] = kind == "drain"
            # a cell serves when it is neither failed nor drained (undrain does not repair)
            out_of_service = self.failed[ev.cells] | self.drained[ev.cells]
            for router in routers:
                router.set_available(ev.cells[~out_of_service], True)
                router.set_available(ev.cells[out_of_service], False)
            batch = evict(ev.cells, t_ns)[0] if kind == "fail" else RequestBatch.empty()
            if kind == "fail" and ev.spec.on_failure == "retry":
                retry.append(self._retried(batch, t_ns))
            elif kind == "fail":
                failed.append(_failed(batch, t_ns))
            self.log.append(
                {
                    "at_ns": int(t_ns),
                    "requested_at_ns": int(ev.spec.at_ns),
                    "kind": kind,
                    "region": ev.spec.region,
                    "cells": len(ev.cells),
                    "requests_retried": len(batch) if ev.spec.on_failure == "retry" else 0,
                    "requests_failed": len(batch) if ev.spec.on_failure == "fail" else 0,
                }
            )
        out = RequestBatch.concat(retry)
        return out.take(np.argsort(out.request_id, kind="stable")), Completed.concat(failed)

    def _retried(self, batch: RequestBatch, t_ns: int) -> RequestBatch:
        for rid, arrival in zip(batch.request_id.tolist(), batch.arrival_ns.tolist(), strict=True):
            self.original_arrival.setdefault(rid, arrival)  # a second failure keeps the first
        cols = batch.columns()
        cols["arrival_ns"] = np.full(len(batch), t_ns, dtype=np.int64)
        return RequestBatch(**cols)

    def restore_arrivals(self, rows: Completed) -> Completed:
        """Rows of retried requests get their original arrival back (latency from it)."""
        if not self.original_arrival or len(rows) == 0:
            return rows
        ids = np.fromiter(self.original_arrival.keys(), dtype=np.int64)
        hit = np.isin(rows.request_id, ids)
        if not hit.any():
            return rows
        arrival = rows.arrival_ns.copy()
        arrival[hit] = [self.original_arrival[int(r)] for r in rows.request_id[hit]]
        return Completed(**{**rows.columns(), "arrival_ns": arrival})


def fleet_event_hooks(
    events: FleetEvents, plane: RoutingPlane, evict: Evict, emit: Callable[[Completed], None]
) -> EventHooks:
    """The window loop's view of `events`, for one process and for a region shard alike:
    events due at a boundary change the routers' available cells, `evict` takes the
    requests of failing cells from whoever holds them (their reports become 0 at once),
    and the rows of failed or unroutable requests go to `emit`."""

    def evict_reported(cells: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        held = evict(cells, at_ns)
        plane.outstanding[cells] = 0
        return held

    def apply_due(t_ns: int) -> RequestBatch:
        retry, failed = events.apply_due(t_ns, plane.routers.values(), evict_reported)
        emit(failed)
        return retry

    def unroutable(batch: RequestBatch) -> None:
        emit(rejected_at_arrival(batch))

    return EventHooks(events.next_boundary, apply_due, unroutable)


def _failed(batch: RequestBatch, t_ns: int) -> Completed:
    return completed_from(
        batch,
        host_id=-1,
        accelerator_id=-1,
        start_ns=np.full(len(batch), t_ns, dtype=np.int64),
        first_token_ns=np.full(len(batch), t_ns, dtype=np.int64),
        finish_ns=np.full(len(batch), t_ns, dtype=np.int64),
        status=STATUS_FAILED,
        batch_size=0,
    )


def drawn_failures(topology: Any) -> list[EventSpec]:
    """Fail/repair events drawn from the scenario's ``failures`` (MTBF/MTTR, exponential):
    each host, rack or region draws from its own stream (StreamKind.FAILURES, region, level,
    index), so
    the events never depend on anything else in the scenario but its seed and topology."""
    scenario = topology.scenario
    regions = [r.name for r in scenario.regions]
    acc_region = np.asarray(topology.acc_region, dtype=np.int64)
    out: list[EventSpec] = []
    for spec in scenario.failures:
        for r, name in enumerate(regions):
            if spec.region not in (None, name):
                continue
            ids = topology.acc_host if spec.level == "host" else topology.acc_rack
            count = len(np.unique(np.asarray(ids, dtype=np.int64)[acc_region == r]))
            if spec.level == "region":  # the whole region fails and is repaired as one (#16)
                count = 1
            for k in range(count):
                level = ("host", "rack", "region").index(spec.level)
                rng = entity_rng(scenario.seed, StreamKind.FAILURES, r, level, k)
                t = 0.0
                while True:
                    t += rng.exponential(spec.mtbf_s)
                    if t >= spec.horizon_s:
                        break
                    down = rng.exponential(spec.mttr_s)
                    part = (k,)
                    for kind, at in (("fail", t), ("repair", t + down)):
                        out.append(
                            EventSpec(
                                at_ns=round(at * 1e9),
                                kind=kind,
                                region=name,
                                service=None,
                                hosts=part if spec.level == "host" else None,
                                racks=part if spec.level == "rack" else None,
                                on_failure=spec.on_failure,
                                field_prefix=spec.field_prefix,
                                file=scenario.file,
                            )
                        )
                    t += down
    return out


def _acc_cells(topology: Any) -> np.ndarray:
    """The cell of every accelerator (cells own contiguous accelerator ranges)."""
    acc0 = np.asarray(topology.cell_acc0, dtype=np.int64)
    return np.repeat(np.arange(topology.cells), np.diff(np.append(acc0, topology.accelerators)))


def _scale_out_cells(topology: Any) -> np.ndarray:
    """Cells whose work crosses the RDMA (scale-out) network: LLM replicas larger than the
    chip's scale-up domain, and prefill/decode pairs linked over scale-out (as the LLM
    factory decides the link)."""
    out = np.zeros(topology.cells, dtype=bool)
    for c in range(topology.cells):
        pool = topology.pools[topology.cell_pool[c]]
        if pool.kind != "llm":
            continue
        domain = topology.catalog.chip(topology.acc_chip[topology.cell_acc0[c]]).scale_up_domain
        out[c] = pool.replica_size > domain or (
            pool.llm is not None and pool.llm.kv_link == "scale_out"
        )
    return out


def resolve_events(specs: tuple[EventSpec, ...], topology: Any, step_ns: int) -> FleetEvents:
    """Cells of each event, the scenario's drawn failures included (UserError for a host or
    rack index out of range). Every cell kind can fail (R&R hosts, synthetic servers, LLM
    replicas, disaggregated or not). Events are applied in time order (stable: listed order
    on ties)."""
    specs = tuple(sorted((*specs, *drawn_failures(topology)), key=lambda ev: ev.at_ns))
    cells = topology.cells
    events = FleetEvents([], step_ns, np.zeros(cells, dtype=bool), np.zeros(cells, dtype=bool))
    if not specs:  # the common case: no topology arrays to build
        return events
    scenario = topology.scenario
    regions, services = [r.name for r in scenario.regions], scenario.services
    cell_region = np.asarray(topology.cell_region, dtype=np.int64)
    cell_service = np.asarray(topology.cell_service, dtype=np.int64)
    acc_cell = _acc_cells(topology)
    for spec in specs:
        if spec.fabric:  # NICs and spines: the fabric's (engine/fabric/), no cell changes
            events.events.append(ResolvedEvent(spec, np.zeros(0, dtype=np.int64)))
            continue
        mask = cell_region == regions.index(spec.region)
        if spec.service is not None:
            if spec.service not in services:
                raise _error(spec, "service", "unknown service", spec.service)
            mask &= cell_service == services.index(spec.service)
        for key in ("hosts", "racks", "links"):
            if getattr(spec, key) is not None:
                mask = mask & _hit(spec, key, topology, mask, acc_cell)
        events.events.append(ResolvedEvent(spec, np.flatnonzero(mask)))
    return events


def _hit(
    spec: EventSpec, key: str, topology: Any, in_region: np.ndarray, acc_cell: np.ndarray
) -> np.ndarray:
    """Cells with any accelerator on the event's hosts or racks (region-local numbering, in
    id order); for links, only those of them that cross the scale-out network."""
    ids = np.asarray(topology.acc_rack if key == "racks" else topology.acc_host, dtype=np.int64)
    local = np.unique(ids[in_region[acc_cell]])
    wanted = list(getattr(spec, key))
    if max(wanted) >= len(local):
        raise _error(spec, key, f"the region has {len(local)} hosts/racks", wanted)
    hit = np.zeros(len(in_region), dtype=bool)
    hit[acc_cell[np.isin(ids, local[wanted])]] = True
    return hit & _scale_out_cells(topology) if key == "links" else hit


def _error(spec: EventSpec, key: str, message: str, value: Any) -> UserError:
    return UserError(
        message, file=spec.file, field=f"{spec.field_prefix}.{key}", value=value, has_value=True
    )
