"""Cells whose transfers cross the fabric see the fabric's rate of each window.

:class:`FabricCell` wraps a cell (the ``Cell`` protocol of engine/cell.py) and, at every
schedule change (a window boundary, :mod:`.schedule`), advances the cell to that boundary
and then hands it the new rate through an *apply* function:

* an LLM replica spanning scale-up domains gets an iteration cost probed with the chip's
  scale-out bandwidth replaced by ``min(chip scale-out, achieved per-stripe rate)``: the
  collectives over scale-out (PP send/recv, EP all-to-all) then take the achieved time;
  an iteration that started before the boundary keeps its cost;
* a disaggregated replica (N:M, engine/llm/disagg.py) gets its scale-out KV links scaled
  per prefill instance (:class:`DisaggRate`): transfers that start from the boundary on
  take the new time, those already under way keep theirs (pd's FIFO fixes a transfer's end
  when it starts).

This is the interface for other cell kinds: the rates of a cell's flows from
:meth:`.schedule.FabricSchedule.cell_segments` (``topology.fabric``), and an apply function
``(cell, rates per sender group, latency_ns) -> None`` chosen in :func:`wrap_cell`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from mtia_cluster.engine.cell import Cell, Completed, DeviceCounters, LoadReport, RequestBatch
from mtia_cluster.engine.fabric.comm import network_table
from mtia_cluster.engine.llm.costs import probe_iteration_cost
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.llm.factory import CostCache
from mtia_cluster.engine.llm.pd_routing import FABRIC_OUT, KVLink
from mtia_cluster.perf import llm_iteration_model

Apply = Callable[[Any, np.ndarray, int], None]


class LLMRate:
    """Apply function of a plain LLM replica: re-probe its iteration cost at the new
    scale-out bandwidth (cached per bandwidth, shared by identical replicas), with the
    scale-out part of each iteration (:func:`.comm.network_table`) for ``network_ns``."""

    def __init__(self, spec: Any, cache: CostCache | None, nominal_cost: Any) -> None:
        cat = spec.catalog
        self.chip = cat.chip(cat.platform(spec.platform_name).chip)
        self.model = cat.model(spec.model_name)
        self.settings = spec.llm
        self.cache = cache if cache is not None else {}
        self.nominal = self.chip.scale_out_bytes_per_s
        self.nominal_cost = nominal_cost  # what the factory probed at the chip's figure
        s = spec.llm
        self.key = ("fabric", self.chip.name, self.model.name, s.tp, s.pp, s.ep, s.dtype)

    def __call__(self, cell: Any, rates: np.ndarray, latency_ns: int) -> None:
        s, sched = self.settings, cell.scheduler
        rate = min(float(rates.min()), self.nominal)
        max_tokens = sched.cost.max_tokens
        key = (*self.key, max_tokens, rate)
        cost = self.cache.get(key)
        if cost is None:
            chip = replace(self.chip, scale_out_bytes_per_s=rate)
            it = llm_iteration_model(chip, self.model, tp=s.tp, pp=s.pp, dtype=s.dtype, ep=s.ep)
            # at the chip's figure the factory's cost holds (the fabric never speeds it up)
            fast = rate >= self.nominal
            base = self.nominal_cost if fast else probe_iteration_cost(it, max_tokens)
            cost = self.cache[key] = replace(base, network_as=network_table(it, max_tokens))
        sched.cost = cost


class DisaggRate:
    """Apply function of a disaggregated replica (engine/llm/disagg.py): every scale-out KV
    link of prefill instance ``p`` runs at ``min(1, rate_p / chip scale-out)`` of the
    bandwidth the replica was built with (pd_routing.kv_link: lanes x chip figure x
    achieved fraction), ``rate_p`` the fabric's per-stripe rate of that instance's flow."""

    def __init__(self, links: list[list[KVLink]], chip_bytes_per_s: float) -> None:
        self.nominal = [list(row) for row in links]
        self.chip_bytes_per_s = chip_bytes_per_s

    def __call__(self, cell: Any, rates: np.ndarray, latency_ns: int) -> None:
        for p, row in enumerate(self.nominal):
            if p >= len(rates) or not np.isfinite(rates[p]):
                continue
            factor = min(1.0, float(rates[p]) / self.chip_bytes_per_s)
            cell.links[p] = [
                replace(k, bytes_per_s=max(1, int(k.bytes_per_s * factor)))
                if k.fabric == FABRIC_OUT
                else k
                for k in row
            ]


class FabricCell:
    """A cell advanced segment by segment of the fabric schedule (see module doc)."""

    def __init__(self, inner: Any, segments: list[tuple[int, np.ndarray, int]], apply: Apply):
        self.inner, self.segments, self.apply = inner, segments, apply
        self._next = 1
        _, rate, latency = segments[0]
        apply(inner, rate, latency)

    def advance(self, until_ns: int) -> Completed:
        parts = []
        while self._next < len(self.segments) and self.segments[self._next][0] < until_ns:
            t, rate, latency = self.segments[self._next]
            parts.append(self.inner.advance(t))
            self.apply(self.inner, rate, latency)
            self._next += 1
        parts.append(self.inner.advance(until_ns))
        return Completed.concat([p for p in parts if len(p)]) if len(parts) > 1 else parts[0]

    def submit(self, batch: RequestBatch) -> None:
        self.inner.submit(batch)

    def report(self) -> LoadReport:
        return self.inner.report()

    def device_counters(self) -> DeviceCounters:
        return self.inner.device_counters()

    def evict(self, at_ns: int) -> RequestBatch:
        return self.inner.evict(at_ns)

    def __getattr__(self, name: str) -> Any:
        """Anything else the wrapped cell offers (prefix events, scheduler, ...)."""
        if name.startswith("__") or name == "inner":  # unpickling: no inner yet
            raise AttributeError(name)
        return getattr(self.inner, name)


def unwrap_cell(cell: Any) -> Any:
    """The simulated cell itself: `cell` without its FabricCell wrapper (if it has one), for
    callers that read the cell's own statistics (a disaggregated replica's ``stats()``)."""
    return cell.inner if isinstance(cell, FabricCell) else cell


def wrap_cell(topology: Any, c: int, cell: Any, spec: Any) -> Cell:
    """`cell` wrapped in a FabricCell when its transfers cross the fabric, else itself."""
    segments = topology.fabric.cell_segments(c)
    if not segments:
        return cell
    if isinstance(cell, DisaggregatedCell):
        cat = spec.catalog
        chip = cat.chip(cat.platform(spec.platform_name).chip)
        return FabricCell(cell, segments, DisaggRate(cell.links, chip.scale_out_bytes_per_s))
    apply = LLMRate(spec, topology._llm_costs, cell.scheduler.cost)
    return FabricCell(cell, segments, apply)
