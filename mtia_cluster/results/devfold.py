"""A run's device counter samples folded as they come: bounded memory for in-process runs.

`Simulation.run(trace, devices=DeviceFold.of(sim))` hands every sample to the fold, which
turns it into that interval's `devices` rows (`DeviceTracker`, exactly what a shard writer
writes) and adds them at once to the per-accelerator totals (`DeviceStatsBuilder`, what a
shard writer accumulates), then drops them. What stays: the tracker's previous counters and
the totals (a few arrays over the fleet's accelerators) and one energy sum per region per
metrics interval (the `regions/` energy column); never a row per accelerator per interval,
so memory follows the fleet and the `regions/` table, not the span times the fleet. The
summary of a folded run has the same bits as that of a run whose samples were kept
(`results.summarize`: the same tables through the same builder in the same order; tested).

`keep_rows=True` also keeps the rows (`write_run`, `summarize(...).devices`): for tests and
small runs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mtia_cluster.engine.cell import DeviceCounters
from mtia_cluster.results.convert import DeviceTracker, fleet_device_info
from mtia_cluster.results.devstats import DeviceStats, DeviceStatsBuilder, merge_device_stats


def fleet_tracker(topology: Any, regions: Sequence[str], services: Sequence[str]) -> DeviceTracker:
    """A `DeviceTracker` over every accelerator of an in-process run's fleet."""
    info, chips = fleet_device_info(topology, np.arange(topology.accelerators))
    return DeviceTracker(info, regions=regions, chips=chips, services=services)


class DeviceFold:
    """Cumulative counters at sample times -> per-accelerator totals (see module doc). A
    sample sink for `Simulation.run(devices=...)`: ``fold(t_ns, counters)``."""

    def __init__(self, tracker: DeviceTracker, interval_ns: int, keep_rows: bool = False):
        self.tracker = tracker
        self.builder = DeviceStatsBuilder(interval_ns)
        self.rows: list[pa.Table] | None = [] if keep_rows else None
        self.last_ns: int | None = None
        self.intervals = 0  # device intervals folded (one per sample after the first)

    @classmethod
    def of(cls, sim: Any, keep_rows: bool = False) -> DeviceFold:
        """The fold of a `Simulation`'s fleet, at its scenario's metrics interval."""
        tracker = fleet_tracker(sim.topology, sim.regions, sim.services)
        return cls(tracker, sim.scenario.metrics_interval_ns, keep_rows)

    def __call__(self, t_ns: int, counters: DeviceCounters) -> None:
        """Counters at `t_ns` (the first call: the run's start); a repeated time adds
        nothing (as `device_tables` skips it)."""
        if self.last_ns is not None and t_ns > self.last_ns:
            table = self.tracker.interval(counters, start_ns=self.last_ns, end_ns=t_ns)
            self.builder.add(table)
            self.intervals += 1
            if self.rows is not None:
                self.rows.append(table)
        if self.last_ns is None or t_ns > self.last_ns:
            self.last_ns = t_ns

    @property
    def stats(self) -> DeviceStats | None:
        """The totals, merged as `stats_of_intervals` merges one writer's (None: no rows)."""
        return merge_device_stats([self.builder.stats])

    def retained(self) -> dict[str, int]:
        """What the fold holds now, counted in entries (not bytes): device rows kept,
        per-accelerator totals, energy bins (one per region per metrics interval)."""
        s = self.builder.stats
        return {
            "device_rows": sum(t.num_rows for t in self.rows) if self.rows is not None else 0,
            "accelerator_totals": s.accelerators,
            "energy_bins": sum(len(b) for b in s.energy_bins.values()),
        }
