"""PNG rendering of the plots with matplotlib (optional extra ``plot``; imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtia_cluster.output import PNG_SOFTWARE
from mtia_cluster.results.analysis.plots import PlotData


def write_png(path: Path, data: PlotData) -> None:
    """Five panels stacked vertically, written as PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 1, figsize=(11, 22), constrained_layout=True)
    fig.suptitle(data.title)
    ax = axes[0]
    for name, (xs, y) in data.cdf.items():
        x = np.asarray(xs)
        ax.step(x[x > 0], np.asarray(y)[x > 0], where="post", label=name)
    ax.set(
        xscale="log",
        title="Latency CDF per service (requests with status ok)",
        xlabel="latency (ms, log scale)",
        ylabel="fraction of requests",
    )
    for ax, values, title, ylabel in (
        (axes[1], data.throughput, "Throughput per region", "completed requests/s"),
        (axes[2], data.p99_ms, "p99 latency per region", "p99 latency (ms)"),
        (axes[4], data.power_w, "Power per region", "power (W)"),
    ):
        x_of = data.p99_times_s if values is data.p99_ms else data.times_s
        for name, ys in values.items():
            series = np.array([np.nan if v is None else v for v in ys], dtype=float)
            ax.plot(x_of[name], series, label=name)
        ax.set(title=title, xlabel="time (s)", ylabel=ylabel)
        ax.set_ylim(bottom=0)
    ax = axes[3]
    if data.heat:
        grid = np.array([[np.nan if v is None else v for v in r] for r in data.heat], dtype=float)
        mesh = ax.pcolormesh(
            data.heat_edges_s,
            np.arange(len(data.heat_rows) + 1),
            grid,
            cmap="Blues",
            vmin=0,
            vmax=1,
        )
        ax.set_yticks(np.arange(len(data.heat_rows)) + 0.5, data.heat_rows)
        ax.invert_yaxis()
        fig.colorbar(mesh, ax=ax, label="utilization")
    ax.set(title="Accelerator utilization per rack", xlabel="time (s)", ylabel="rack")
    for ax in (axes[0], axes[1], axes[2], axes[4]):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    fig.savefig(path, format="png", dpi=80, metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)
