"""Accelerator totals per (region, service) from the `devices/` dataset, read in batches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

DEVICE_COLUMNS = [
    "region",
    "service",
    "accelerator_id",
    "interval_start_ns",
    "interval_end_ns",
    "busy_ns",
    "energy_j",
]


@dataclass
class DeviceTotals:
    """Sums over a set of device-interval rows."""

    busy_ns: int = 0
    device_ns: int = 0  # sum of interval lengths (device-time observed)
    energy_j: float = 0.0
    start_ns: int | None = None
    end_ns: int | None = None
    accelerators: set[int] = field(default_factory=set)

    def add(self, other: DeviceTotals) -> None:
        """Accumulate `other` into self."""
        self.busy_ns += other.busy_ns
        self.device_ns += other.device_ns
        self.energy_j += other.energy_j
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
        """Summary fields: accelerators, utilization, energy_j, avg_power_w."""
        span_s = 0.0
        if self.start_ns is not None and self.end_ns is not None:
            span_s = (self.end_ns - self.start_ns) / 1e9
        return {
            "accelerators": len(self.accelerators),
            "utilization": self.busy_ns / self.device_ns if self.device_ns else None,
            "energy_j": self.energy_j,
            "avg_power_w": self.energy_j / span_s if span_s > 0 else None,
        }


def _batch_totals(batch: pa.RecordBatch) -> dict[tuple[str, str | None], DeviceTotals]:
    """Totals per (region, service) of one record batch (pyarrow group_by)."""
    table = pa.table(
        {
            "region": batch["region"].cast(pa.string()),
            "service": batch["service"].cast(pa.string()),
            "accelerator_id": batch["accelerator_id"],
            "start": batch["interval_start_ns"],
            "end": batch["interval_end_ns"],
            "device_ns": pc.subtract(batch["interval_end_ns"], batch["interval_start_ns"]),
            "busy_ns": batch["busy_ns"],
            "energy_j": batch["energy_j"],
        }
    )
    agg = table.group_by(["region", "service"]).aggregate(
        [
            ("busy_ns", "sum"),
            ("device_ns", "sum"),
            ("energy_j", "sum"),
            ("start", "min"),
            ("end", "max"),
            ("accelerator_id", "distinct"),
        ]
    )
    out: dict[tuple[str, str | None], DeviceTotals] = {}
    for row in agg.to_pylist():
        out[(row["region"], row["service"])] = DeviceTotals(
            busy_ns=int(row["busy_ns_sum"]),
            device_ns=int(row["device_ns_sum"]),
            energy_j=float(row["energy_j_sum"]),
            start_ns=int(row["start_min"]),
            end_ns=int(row["end_max"]),
            accelerators=set(row["accelerator_id_distinct"]),
        )
    return out


def device_totals(dataset: ds.Dataset | None) -> dict[tuple[str, str | None], DeviceTotals]:
    """Totals per (region, service or None for idle accelerators) over the whole dataset."""
    totals: dict[tuple[str, str | None], DeviceTotals] = {}
    if dataset is None:
        return totals
    for batch in dataset.to_batches(columns=DEVICE_COLUMNS):
        for key, part in _batch_totals(batch).items():
            totals.setdefault(key, DeviceTotals()).add(part)
    return totals
