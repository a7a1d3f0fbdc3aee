"""Accelerator totals per (region, service) from the `devices/` dataset."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


def canonical_columns(dataset: ds.Dataset, columns: list[str]) -> dict[str, np.ndarray]:
    """`columns` of every device row as numpy arrays in one canonical order, by
    (accelerator_id, interval_start_ns), a unique key: sums over them are then the same bits
    however the rows were split into files, row groups or shards (`region` and `service`
    come back as int codes into ``<name>_names``; a null service is -1)."""
    wanted = sorted({*columns, "accelerator_id", "interval_start_ns"})
    t = dataset.to_table(columns=wanted)
    order = np.lexsort((t["interval_start_ns"].to_numpy(), t["accelerator_id"].to_numpy()))
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        col = t[name]
        if name in ("region", "service"):
            enc = pc.dictionary_encode(col.cast(pa.string())).combine_chunks()
            out[name] = enc.indices.fill_null(-1).to_numpy()[order]
            out[f"{name}_names"] = np.array(enc.dictionary.to_pylist(), dtype=object)
        else:
            out[name] = col.to_numpy()[order]
    return out


def device_totals(dataset: ds.Dataset | None) -> dict[tuple[str, str | None], DeviceTotals]:
    """Totals per (region, service or None for idle accelerators) over the whole dataset,
    summed in the canonical row order (`canonical_columns`), keys sorted."""
    totals: dict[tuple[str, str | None], DeviceTotals] = {}
    if dataset is None:
        return totals
    c = canonical_columns(dataset, device_columns(dataset))
    if len(c["accelerator_id"]) == 0:
        return totals
    key = c["region"].astype(np.int64) * (len(c["service_names"]) + 1) + c["service"] + 1
    for k in np.unique(key).tolist():
        sel = key == k
        region = str(c["region_names"][k // (len(c["service_names"]) + 1)])
        code = k % (len(c["service_names"]) + 1) - 1
        service = None if code < 0 else str(c["service_names"][code])
        start, end = c["interval_start_ns"][sel], c["interval_end_ns"][sel]
        totals[(region, service)] = DeviceTotals(
            busy_ns=int(c["busy_ns"][sel].sum()),
            device_ns=int((end - start).sum()),
            energy_j=float(np.sum(c["energy_j"][sel])),
            start_ns=int(start.min()),
            end_ns=int(end.max()),
            accelerators=set(np.unique(c["accelerator_id"][sel]).tolist()),
            cost={n: float(np.sum(c[n][sel])) if n in c else 0.0 for n in COST_COLUMNS},
        )
    return dict(sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")))
