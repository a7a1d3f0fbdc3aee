"""What a run of the engine returns: per-request rows and device counter samples, no figures.

Every figure (rates, quantiles, utilization, energy, verdicts) is computed by
`mtia_cluster.results.summarize`, the one summary path shared with the results directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtia_cluster.engine.cell import Completed, DeviceCounters


@dataclass
class RunOutput:
    """A finished in-process run (rows only; see module doc)."""

    scenario: Any  # config.scenario.Scenario
    services: list[str]
    regions: list[str]
    requests: Completed  # every trace request once, ordered by request_id
    samples: list[tuple[int, DeviceCounters]]  # cumulative counters at t_ns, from t = 0
    topology: Any  # engine.topology.Topology
    end_ns: int  # simulated span: the last window bound
    fleet_events: list[dict[str, Any]] = field(default_factory=list)  # applied, in order
    autoscale: list[dict[str, Any]] = field(default_factory=list)  # replica counts (autoscale.py)
