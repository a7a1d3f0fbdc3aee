"""PNG rendering of the rollout plots with matplotlib (optional extra ``plot``; lazy import)."""

from __future__ import annotations

import math
from pathlib import Path

from mtia_cluster.output import PNG_SOFTWARE
from mtia_cluster.results.analysis.rollout_plot_data import PHASE_COLORS, RolloutPlotData

COLUMNS = 4


def write_png(path: Path, data: RolloutPlotData) -> None:
    """The wave Gantt chart on top, then capacity vs demand per region in a grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(COLUMNS, max(len(data.regions), 1))
    grid_rows = math.ceil(len(data.regions) / cols)
    fig = plt.figure(figsize=(4 * cols, 4 + 3 * grid_rows), constrained_layout=True)
    spec = fig.add_gridspec(grid_rows + 1, cols, height_ratios=[1.6] + [1.0] * grid_rows)
    fig.suptitle(data.title)
    ax = fig.add_subplot(spec[0, :])
    for b in data.bars:
        ax.barh(b.row, b.end_day - b.start_day, left=b.start_day, color=PHASE_COLORS[b.phase])
    ax.set_yticks(range(len(data.rows)), data.rows, fontsize=7)
    ax.invert_yaxis()
    ax.set(title="Waves (Gantt)", xlabel="day", xlim=(0, max(data.horizon_days, 1.0)))
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in PHASE_COLORS.values()]
    ax.legend(handles, list(PHASE_COLORS), loc="lower right")
    for i, r in enumerate(data.regions):
        a = fig.add_subplot(spec[1 + i // cols, i % cols])
        a.plot(data.days[r], data.capacity[r], label="capacity")
        a.plot(data.days[r], data.demand[r], label="demand")
        for day, demand, agrees in data.moments.get(r, []):
            a.plot(day, demand, "o", ms=6, mfc="none", color="green" if agrees else "red")
        a.set(title=r, xlabel="day", ylabel="requests/s", xlim=(0, max(data.horizon_days, 1.0)))
        a.set_ylim(bottom=0)
        a.grid(alpha=0.3)
        if i == 0:
            a.legend(loc="lower left")
    fig.savefig(path, format="png", dpi=80, metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)
