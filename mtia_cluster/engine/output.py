"""What a run of the engine returns: per-request rows and device counter samples, no figures.

Every figure (rates, quantiles, utilization, energy, verdicts) is computed by
`mtia_cluster.results.summarize`, the one summary path shared with the results directory.

Device counters are sampled at every metrics boundary. A run either hands them to a sink as
they come (``Simulation.run(devices=...)``: `results.DeviceFold` folds them into per-accelerator
totals, so memory follows the fleet, not the span) or keeps them all in `RunOutput.samples`
(:class:`KeptSamples`: the engine API and tests that compare samples), which is refused,
one line, once it would hold more device intervals than the in-memory limit
(`device_intervals`, docs/limits.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtia_cluster.config.limits import Limits, limit_error
from mtia_cluster.engine.cell import Completed, DeviceCounters

SampleSink = Callable[[int, DeviceCounters], None]  # sink(t_ns, cumulative counters at t_ns)


@dataclass
class RunOutput:
    """A finished in-process run (rows only; see module doc)."""

    scenario: Any  # config.scenario.Scenario
    services: list[str]
    regions: list[str]
    requests: Completed  # every trace request once, ordered by request_id
    samples: list[tuple[int, DeviceCounters]]  # kept counters at t_ns from t = 0 ([]: sunk)
    topology: Any  # engine.topology.Topology
    end_ns: int  # simulated span: the last window bound
    fleet_events: list[dict[str, Any]] = field(default_factory=list)  # applied, in order
    autoscale: list[dict[str, Any]] = field(default_factory=list)  # replica counts (autoscale.py)
    devices: SampleSink | None = None  # the sink the samples went to (None: kept in `samples`)


class KeptSamples:
    """Every sample kept in a list, refused once it holds more device intervals (samples x
    accelerators) than `limit`: a run whose drain outlasts the span checked before it still
    cannot grow without bound."""

    def __init__(self, accelerators: int, file: Any = None, limit: int | None = None) -> None:
        self.samples: list[tuple[int, DeviceCounters]] = []
        self.accelerators = max(1, accelerators)
        self.file = file
        self.limit = Limits.from_env().device_intervals if limit is None else limit

    def __call__(self, t_ns: int, counters: DeviceCounters) -> None:
        held = (len(self.samples) + 1) * self.accelerators
        if held > self.limit:
            raise limit_error(
                f"device samples kept in memory at t = {t_ns / 1e9:,.3f} s: device intervals",
                held,
                "device_intervals",
                self.limit,
                self.file,
                "metrics_interval_ms",
            )
        self.samples.append((t_ns, counters))
