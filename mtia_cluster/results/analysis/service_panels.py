"""Per-service panels of the run report: every service in its own metrics, never pooled.

A ranking service and an LLM service have different latency metrics (end-to-end latency vs
TTFT and TPOT) and rates that differ by orders of magnitude, so one "p99 per region" line
over both swings between them and says nothing. Each service gets its own panel: completed
requests/s, its latency metric(s) at p99 with the SLO bound drawn, and the utilization of
the accelerators serving it, one line per region; with more than `SMALL_MULTIPLES_OVER`
regions, one chart per region (small multiples) instead of a tangle of lines. Fleet events
(failures, repairs, drains) are dashed vertical lines on every time chart.

Data: the ok requests of one (region, service) at a time (a few columns of requests/, filtered
in the Parquet scan), windowed by finish time like `regions/`; p99s are exact (numpy linear
interpolation, as summary.json and `analyze`, tested equal to `analyze --window`).
Utilization per (region, service, window) comes from devices/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mtia_cluster import fmt
from mtia_cluster.results.analysis import svg
from mtia_cluster.results.reader import Results

SMALL_MULTIPLES_OVER = 6  # regions per chart before one chart per region

# (key, title, unit label, scale from the row's value) per service kind
METRICS: dict[str, list[tuple[str, str, str]]] = {
    "rr": [
        ("completed_per_s", "throughput", "completed requests/s"),
        ("latency_p99_ms", "p99 latency", "p99 latency (ms)"),
        ("utilization_pct", "accelerator utilization", "utilization (%)"),
    ],
    "llm": [
        ("completed_per_s", "throughput", "completed requests/s"),
        ("ttft_p99_ms", "TTFT p99", "p99 time to first token (ms)"),
        ("tpot_p99_ms", "TPOT p99", "p99 time per output token (ms)"),
        ("utilization_pct", "accelerator utilization", "utilization (%)"),
    ],
}
_SLO_OF = {"latency_p99_ms": "latency_ns", "ttft_p99_ms": "ttft_ns", "tpot_p99_ms": "tpot_ns"}


@dataclass
class ServicePanel:
    """One service's time series per region."""

    service: str
    kind: str
    times_s: dict[str, list[float]] = field(default_factory=dict)  # region -> window starts
    values: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    bounds_ms: dict[str, float] = field(default_factory=dict)  # metric key -> SLO bound


def _p99_by_group(keys: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Exact p99 (numpy's linear interpolation) of `values` per integer key in
    [0, groups); NaN where a group is empty. One stable (radix) sort of the small keys, then
    a linear-time selection per group."""
    out = np.full(groups, np.nan)
    if len(keys) == 0:
        return out
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(groups + 1))
    for g in range(groups):
        a, b = bounds[g], bounds[g + 1]
        if b > a:
            out[g] = np.quantile(values[order[a:b]], 0.99)
    return out


def window_lengths_s(span_ns: int, window: int, windows: int) -> np.ndarray:
    """Each window's length in seconds: `window`, but the last only up to the run's end, so
    that a rate in a partial last window is over the time it covers (not diluted to ~0)."""
    left = span_ns - np.arange(windows, dtype=np.int64) * window
    return np.where(left > 0, np.minimum(window, left), window) / 1e9  # as analyze --window


def _series(
    run: Results, service: str, kind: str, regions: list[str], window: int, windows: int
) -> dict[str, np.ndarray]:
    """Per metric, a (regions x windows) array for one service's ok requests. Read one
    region at a time (requests/ is partitioned by region, so each read touches only its
    files): memory is bounded by the largest (region, service) group, ~24 bytes a request,
    as for summary.json's exact quantiles."""
    keys = ["completed_per_s", *(k for k, _, _ in METRICS[kind] if k.endswith("_ms"))]
    out = {k: np.full((len(regions), windows), np.nan) for k in keys}
    lengths_s = window_lengths_s(int(run.summary.get("duration_ns", 0)), window, windows)
    cols = ["finish_ns", "latency_ns"]
    if kind == "llm":
        cols += ["arrival_ns", "first_token_ns", "output_tokens"]
    for r, region in enumerate(regions):
        flt = (
            (ds.field("region") == region)
            & (ds.field("service") == service)
            & (ds.field("status") == "ok")
        )
        t = run.requests.to_table(columns=cols, filter=flt)
        win = np.minimum(t["finish_ns"].to_numpy() // window, windows - 1)
        out["completed_per_s"][r] = np.bincount(win, minlength=windows) / lengths_s
        if kind == "rr":
            out["latency_p99_ms"][r] = _p99_by_group(win, t["latency_ns"].to_numpy(), windows)
            continue
        first, arrival = t["first_token_ns"].to_numpy(), t["arrival_ns"].to_numpy()
        out["ttft_p99_ms"][r] = _p99_by_group(win, first - arrival, windows)
        tokens = t["output_tokens"].to_numpy()
        multi = tokens > 1
        tpot = (t["finish_ns"].to_numpy()[multi] - first[multi]) / (tokens[multi] - 1)
        out["tpot_p99_ms"][r] = _p99_by_group(win[multi], tpot, windows)
    for k in keys:
        if k.endswith("_ms"):
            out[k] /= 1e6
    return out


def _utilization(
    run: Results, regions: list[str], services: list[str], window: int, windows: int
) -> np.ndarray:
    """busy / device time per (service, region, window) from devices/ (NaN: no devices)."""
    busy = np.zeros((len(services), len(regions), windows))
    dev = np.zeros_like(busy)
    if run.devices is None:
        return busy * np.nan
    cols = ["region", "service", "interval_start_ns", "interval_end_ns", "busy_ns"]
    for b in run.devices.to_batches(columns=cols):
        if not b.num_rows:
            continue
        s_all = _index_of(b["service"], services)  # -1: idle device or unknown service
        keep = s_all >= 0
        s_i, r_i = s_all[keep], _index_of(b["region"], regions)[keep]
        start = b["interval_start_ns"].to_numpy()[keep]
        w_i = np.minimum(start // window, windows - 1)
        span = b["interval_end_ns"].to_numpy()[keep] - start
        np.add.at(busy, (s_i, r_i, w_i), b["busy_ns"].to_numpy()[keep])
        np.add.at(dev, (s_i, r_i, w_i), span)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dev > 0, busy / dev, np.nan)


def _index_of(column: pa.Array, names: list[str]) -> np.ndarray:
    """Position in `names` of each value of a string column (-1: null or not listed), with
    one Python lookup per distinct value."""
    values = pc.cast(column, pa.string()).to_numpy(zero_copy_only=False)
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    pos = {n: i for i, n in enumerate(names)}
    table = np.asarray([pos.get(u, -1) for u in uniq.tolist()], dtype=np.int64)
    out = table[inverse] if len(values) else np.zeros(0, np.int64)
    return np.where(pc.is_null(column).to_numpy(zero_copy_only=False), -1, out)


def _listed(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in a]


def collect_panels(run: Results, window_ns: int | None = None) -> list[ServicePanel]:
    """The panels of every service, windows of `window_ns` (default: the run's interval)."""
    window = int(window_ns or run.manifest.get("interval_ns") or 1_000_000_000)
    kinds = {e["service"]: e["kind"] for e in run.summary.get("services", [])}
    services = [s for s in run.manifest.get("services", []) if s in kinds]
    regions = list(run.manifest.get("regions", []))  # manifest order: same colours everywhere
    span = int(run.summary.get("duration_ns", 0))
    served = {(g["region"], g["service"]) for g in run.summary.get("groups", [])}
    windows = max(1, -(-span // window))
    util = _utilization(run, regions, services, window, windows)
    panels = []
    for si, name in enumerate(services):
        panel = ServicePanel(name, kinds[name])
        series = _series(run, name, panel.kind, regions, window, windows)
        series["utilization_pct"] = 100.0 * util[si]
        for ri, region in enumerate(regions):
            if (region, name) not in served:
                continue
            panel.times_s[region] = [w * window / 1e9 for w in range(windows)]
            for key, _, _ in METRICS[panel.kind]:
                panel.values.setdefault(key, {})[region] = _listed(series[key][ri])
        slo = run.slos.get(name)
        for key, attr in _SLO_OF.items():
            bound = getattr(slo, attr, None) if slo is not None else None
            if bound is not None:
                panel.bounds_ms[key] = bound / 1e6
        panels.append(panel)
    return panels


def fleet_event_markers(manifest: dict[str, Any]) -> list[tuple[float, str]]:
    """(time s, label) of each fleet event the run applied (manifest ``fleet_events``)."""
    out = []
    for ev in manifest.get("fleet_events") or []:
        cells = fmt.count(ev.get("cells", 0), "cell")  # as the console (cli/demo.py)
        out.append((ev["at_ns"] / 1e9, f"{ev['kind']} {ev['region']} ({cells})"))
    return out


def panel_svgs(
    panel: ServicePanel,
    x_range: tuple[float, float] | None,
    markers: list[tuple[float, str]],
) -> list[str]:
    """The panel's charts: one per metric, or one per metric and region (small multiples)."""
    regions = list(panel.times_s)
    groups = [[r] for r in regions] if len(regions) > SMALL_MULTIPLES_OVER else [regions]
    charts = []
    for key, title, ylabel in METRICS[panel.kind]:
        bound = panel.bounds_ms.get(key)
        for group in groups:
            where = f" ({group[0]})" if len(groups) > 1 else " per region"
            charts.append(
                svg.line_chart(
                    [(r, panel.times_s[r], panel.values[key][r]) for r in group],
                    title=f"{panel.service} ({panel.kind}): {title}{where}",
                    xlabel="time (s)",
                    ylabel=ylabel,
                    x_range=x_range,
                    markers=markers,
                    bound=None if bound is None else (bound, f"SLO {bound:g} ms"),
                )
            )
    return charts
