"""PNG rendering of the plots with matplotlib (optional extra ``plot``; imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mtia_cluster.output import PNG_SOFTWARE
from mtia_cluster.results.analysis.service_panels import METRICS, ServicePanel


class Figures(Protocol):
    """What the PNG shows: the fields of `plots.PlotData` it reads (a protocol, so this
    module, which plots.py loads lazily, does not import plots.py back)."""

    @property
    def title(self) -> str: ...
    @property
    def cdf(self) -> dict[str, tuple[list[float], list[float]]]: ...
    @property
    def times_s(self) -> dict[str, list[float]]: ...
    @property
    def power_w(self) -> dict[str, list[float | None]]: ...
    @property
    def heat(self) -> list[list[float | None]]: ...
    @property
    def heat_rows(self) -> list[str]: ...
    @property
    def heat_edges_s(self) -> list[float]: ...
    @property
    def panels(self) -> list[ServicePanel]: ...
    @property
    def markers(self) -> list[tuple[float, str]]: ...


def write_png(path: Path, data: Figures) -> None:
    """The HTML report's charts stacked vertically (latency CDF, each service's panel
    metrics, heat map, power), written as PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [(p, m) for p in data.panels for m in METRICS[p.kind]]
    n = 3 + len(metrics)
    fig, axes = plt.subplots(n, 1, figsize=(11, 4.4 * n), constrained_layout=True, squeeze=False)
    axes = axes[:, 0]
    fig.suptitle(data.title)
    _cdf(axes[0], data)
    for ax, (panel, (key, title, ylabel)) in zip(axes[1:], metrics, strict=False):
        for region, times in panel.times_s.items():
            ax.plot(times, _floats(panel.values[key][region]), label=region)
        if key in panel.bounds_ms:
            ax.axhline(panel.bounds_ms[key], color="#d62728", ls="--", label="SLO")
        ax.set(title=f"{panel.service} ({panel.kind}): {title}", xlabel="time (s)", ylabel=ylabel)
        ax.set_ylim(bottom=0)
    _power(axes[-1], data)
    for ax in [*axes[1 : 1 + len(metrics)], axes[-1]]:
        for t, label in data.markers:
            ax.axvline(t, color="#555", ls=":", lw=1)
            ax.annotate(label, (t, 1), xycoords=("data", "axes fraction"), fontsize=7, va="top")
    _heat(fig, axes[-2], data)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    fig.savefig(path, format="png", dpi=80, metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)


def _cdf(ax: Any, data: Figures) -> None:
    """End-to-end latency CDF per service (log latency axis)."""
    for name, (xs, y) in data.cdf.items():
        x = np.asarray(xs)
        ax.step(x[x > 0], np.asarray(y)[x > 0], where="post", label=name)
    ax.set(
        xscale="log",
        title="End-to-end latency CDF per service (requests with status ok)",
        xlabel="latency (ms, log scale)",
        ylabel="fraction of requests",
    )


def _power(ax: Any, data: Figures) -> None:
    """Accelerator power per region over time."""
    for name, ys in data.power_w.items():
        ax.plot(data.times_s[name], _floats(ys), label=name)
    ax.set(title="Accelerator power per region (all services)", xlabel="time (s)")
    ax.set(ylabel="power (W)")
    ax.set_ylim(bottom=0)


def _heat(fig: Any, ax: Any, data: Figures) -> None:
    """Accelerator utilization per rack over time, as a heat map."""
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
    ax.set(title="Accelerator utilization per rack", xlabel="time (s)", ylabel="region/rack/chip")


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)
