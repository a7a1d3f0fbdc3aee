"""What the rollout plots draw (rollout_plots.py collects it from a rollout directory): the
wave Gantt bars and the per-region capacity and demand series, and the phase colours.

Apart from the HTML writer so that the PNG writer (rollout_plots_png.py), which the HTML
writer calls for .png targets, can read it without importing the writer back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PHASE_COLORS = {"swapping": "#1f77b4", "baking": "#ff7f0e", "rolling_back": "#d62728",
                "paused": "#7f7f7f"}  # fmt: skip


@dataclass
class Bar:
    row: int
    start_day: float
    end_day: float
    phase: str


@dataclass
class RolloutPlotData:
    title: str
    horizon_days: float
    regions: list[str] = field(default_factory=list)
    days: dict[str, list[float]] = field(default_factory=dict)
    capacity: dict[str, list[float]] = field(default_factory=dict)
    demand: dict[str, list[float]] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)  # Gantt rows: "w0 region"
    bars: list[Bar] = field(default_factory=list)
    # region -> (day, demand_rps, agrees) of each replayed moment
    moments: dict[str, list[tuple[float, float, bool]]] = field(default_factory=dict)
    # region -> (day, label) of its wave's gates and rollbacks (dashed lines on its chart)
    marks: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
