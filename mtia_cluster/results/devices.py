"""Accelerator totals per (region, service): the `DeviceTotals` a summary group shows
(results/devstats.py computes them from the `devices/` rows)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.dataset as ds

from mtia_cluster.units import J_PER_KWH

DEVICE_COLUMNS = [
    "region",
    "service",
    "accelerator_id",
    "interval_start_ns",
    "interval_end_ns",
    "busy_ns",
    "energy_j",
]
# cost columns (issue #19): summed like energy_j; absent from results written before them
COST_COLUMNS = [
    "memory_bound_ns",
    "host_energy_j",
    "facility_energy_j",
    "energy_cost_usd",
    "co2e_g",
    "capex_usd",
]


def device_columns(dataset: ds.Dataset) -> list[str]:
    """The DEVICE_COLUMNS and whichever COST_COLUMNS `dataset` holds."""
    names = set(dataset.schema.names)
    return DEVICE_COLUMNS + [c for c in COST_COLUMNS if c in names]


@dataclass
class DeviceTotals:
    """Sums over a set of device-interval rows."""

    busy_ns: int = 0
    device_ns: int = 0  # sum of interval lengths (device-time observed)
    energy_j: float = 0.0
    start_ns: int | None = None
    end_ns: int | None = None
    accelerators: set[int] = field(default_factory=set)
    cost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COST_COLUMNS, 0.0))

    def add(self, other: DeviceTotals) -> None:
        """Accumulate `other` into self."""
        self.busy_ns += other.busy_ns
        self.device_ns += other.device_ns
        self.energy_j += other.energy_j
        for name in COST_COLUMNS:
            self.cost[name] += other.cost[name]
        starts = [s for s in (self.start_ns, other.start_ns) if s is not None]
        ends = [e for e in (self.end_ns, other.end_ns) if e is not None]
        self.start_ns = min(starts) if starts else None
        self.end_ns = max(ends) if ends else None
        self.accelerators |= other.accelerators

    @classmethod
    def sum(cls, parts: Iterable[DeviceTotals]) -> DeviceTotals:
        """The total of `parts`."""
        out = cls()
        for p in parts:
            out.add(p)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Summary fields: accelerators, utilization, energy_j, avg_power_w, and the cost
        figures (`cost_fields`)."""
        span_s = 0.0
        if self.start_ns is not None and self.end_ns is not None:
            span_s = (self.end_ns - self.start_ns) / 1e9
        return {
            "accelerators": len(self.accelerators),
            "utilization": self.busy_ns / self.device_ns if self.device_ns else None,
            "energy_j": self.energy_j,
            "avg_power_w": self.energy_j / span_s if span_s > 0 else None,
            **cost_fields(self.cost, self.busy_ns, span_s),
        }


def cost_fields(cost: dict[str, float], busy_ns: int, span_s: float) -> dict[str, Any]:
    """Energy at the wall, its price and carbon, amortized capex (docs/planning.md)."""
    facility = cost["facility_energy_j"]
    return {
        "memory_bound_fraction": cost["memory_bound_ns"] / busy_ns if busy_ns else None,
        "host_energy_j": cost["host_energy_j"],
        "facility_energy_kwh": facility / J_PER_KWH,
        "facility_power_w": facility / span_s if span_s > 0 else None,
        "energy_cost_usd": cost["energy_cost_usd"],
        "capex_usd": cost["capex_usd"],
        "cost_usd": cost["energy_cost_usd"] + cost["capex_usd"],
        "co2e_g": cost["co2e_g"],
    }
