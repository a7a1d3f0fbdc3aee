"""`analyze --plot FILE`: latency CDF per service, throughput/p99/power per region over time,
and a rack x time utilization heatmap, as a self-contained HTML page or a PNG.

The HTML embeds inline SVG made by svg.py (no scripts, fonts or URLs), so it opens offline.
The PNG uses matplotlib, an optional extra (``pip install 'mtia-cluster[plot]'``). Data come
from streaming reads: the CDF from a one-pass histogram (0.8% resolution, hist.py), the time
series from `regions/` (or the ``--window`` analysis), the heatmap from `devices/`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster import fmt
from mtia_cluster.errors import UserError
from mtia_cluster.output import HTML_GENERATOR, PLOT_FILE, claim_output, staged
from mtia_cluster.results.analysis import svg
from mtia_cluster.results.analysis.core import analyze
from mtia_cluster.results.analysis.groups import Level, build_keys
from mtia_cluster.results.analysis.hist import N_BUCKETS, bucket_lower_bound
from mtia_cluster.results.analysis.passes import LevelAcc, batches, first_pass, llm_mask
from mtia_cluster.results.reader import Results
from mtia_cluster.results.summary import region_kinds

SUFFIXES = (".html", ".htm", ".png")
MAX_COLUMNS = 120
MAX_RACK_ROWS = 64


def check_plot_target(path: Path) -> None:
    """Refuse an unknown suffix, or PNG without matplotlib, before any work is done."""
    if path.suffix.lower() not in SUFFIXES:
        raise UserError("plot file must end in .html or .png", field="--plot", value=str(path))
    if path.suffix.lower() == ".png" and importlib.util.find_spec("matplotlib") is None:
        raise UserError(
            "PNG plots need matplotlib (pip install 'mtia-cluster[plot]'); or write .html",
            field="--plot",
            value=str(path),
        )


@dataclass
class PlotData:
    """Everything the four plots show."""

    title: str
    cdf: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # ms, frac
    times_s: dict[str, list[float]] = field(default_factory=dict)
    throughput: dict[str, list[float | None]] = field(default_factory=dict)
    p99_ms: dict[str, list[float | None]] = field(default_factory=dict)
    p99_times_s: dict[str, list[float]] = field(default_factory=dict)  # x of each p99 series
    power_w: dict[str, list[float | None]] = field(default_factory=dict)
    heat: list[list[float | None]] = field(default_factory=list)
    heat_rows: list[str] = field(default_factory=list)
    heat_edges_s: list[float] = field(default_factory=list)


def latency_cdfs(run: Results) -> dict[str, tuple[list[float], list[float]]]:
    """Per service: (latency ms at bucket upper edges, fraction of ok requests at or below),
    starting at (lower edge of the first occupied bucket, 0)."""
    services = list(run.manifest.get("services", []))
    keys = build_keys(run.manifest.get("regions", []), services, None)
    acc = LevelAcc(Level(("service",), (keys.size("service"),), 1), len(services) + 1, False)
    llm = llm_mask(services, {})
    for b in batches(run.requests, keys, None, 1):
        first_pass(acc, b, llm, None)
    hkeys, counts = acc.hist["latency"].items()
    out = {}
    for code, name in enumerate(services):
        mine = hkeys // N_BUCKETS == code
        if mine.any():
            buckets = hkeys[mine] % N_BUCKETS
            upper = bucket_lower_bound(buckets + 1) / 1e6
            start = float(bucket_lower_bound(buckets[:1])[0]) / 1e6  # the CDF rises from 0 here
            frac = np.cumsum(counts[mine]) / counts[mine].sum()
            out[name] = ([start, *upper.tolist()], [0.0, *frac.tolist()])
    return out


def region_series(run: Results, data: PlotData, window_ns: int | None) -> None:
    """Throughput, p99 and power per region over time (regions/, or the window analysis).

    The p99 of a region serving both R&R and LLM services is not one figure (regions/ leaves
    it null): such a region gets one p99 series per service (`region/service`), from the
    window analysis by region and service."""
    mixed = {r for r, kinds in region_kinds(run.summary).items() if len(kinds) > 1}
    if window_ns is not None:
        doc = analyze(run, by=("region", "service"), window_ns=window_ns)
        for r in doc["rows"]:
            if r["level"] not in ("region", "*"):
                continue
            name = r["region"] if r["level"] == "region" else "fleet"
            data.times_s.setdefault(name, []).append(r["window_start_ns"] / 1e9)
            data.throughput.setdefault(name, []).append(r["completed_per_s"])
            data.power_w.setdefault(name, []).append(r.get("avg_power_w"))
        _p99_series(data, doc, mixed)
        return
    table = run.regions.to_table()
    names = table["region"].cast(pa.string())
    covered_ns = _devices_end(run)  # no device data after this: power unknown, not 0 W
    for name in run.manifest.get("regions", []):
        t = table.filter(pc.equal(names, name)).sort_by("interval_start_ns")
        data.times_s[name] = (t["interval_start_ns"].to_numpy() / 1e9).tolist()
        data.throughput[name] = t["completed_per_s"].to_pylist()
        if name not in mixed:
            data.p99_times_s[name] = data.times_s[name]
            data.p99_ms[name] = [fmt.ms(v) for v in t["latency_p99_ns"].to_pylist()]
        data.power_w[name] = [
            p if start < covered_ns else None
            for p, start in zip(
                t["power_w"].to_pylist(), t["interval_start_ns"].to_pylist(), strict=True
            )
        ]
    if mixed:
        interval = int(run.manifest.get("interval_ns", 1_000_000_000))
        _p99_series(data, analyze(run, by=("region", "service"), window_ns=interval), mixed)


def _p99_series(data: PlotData, doc: dict[str, Any], mixed: set[str]) -> None:
    """p99 over time from window-analysis rows: per region, or per region and service for
    the `mixed` regions; the fleet's only when no region is mixed."""
    for r in doc["rows"]:
        level = r["level"]
        if level == "region" and r["region"] not in mixed:
            name = r["region"]
        elif level == "*" and not mixed:
            name = "fleet"
        elif level == "region,service" and r["region"] in mixed:
            name = f"{r['region']}/{r['service']}"
        else:
            continue
        data.p99_times_s.setdefault(name, []).append(r["window_start_ns"] / 1e9)
        data.p99_ms.setdefault(name, []).append(fmt.ms(r["latency_ns"]["p99"]))


def _devices_end(run: Results) -> int:
    """End (ns) of the last device interval; 0 without devices."""
    if run.devices is None:
        return 0
    ends = [
        pc.max(b["interval_end_ns"]).as_py() or 0
        for b in run.devices.to_batches(columns=["interval_end_ns"])
        if b.num_rows
    ]
    return max(ends, default=0)


def utilization_heatmap(run: Results, data: PlotData) -> None:
    """Rack x time utilization (busy / device time) from devices/, at most 120 columns."""
    devices = run.devices
    if devices is None:
        return
    span = max(int(run.summary.get("duration_ns", 0)), 1)
    interval_ns = _device_interval(devices)
    # whole device intervals per column, so no column falls between two intervals' starts
    bin_ns = interval_ns * max(1, -(-span // (interval_ns * MAX_COLUMNS)))
    parts = []
    for batch in devices.to_batches(
        columns=["rack_id", "interval_start_ns", "interval_end_ns", "busy_ns"]
    ):
        t = pa.table(
            {
                "rack": batch["rack_id"],
                "bin": pc.divide(batch["interval_start_ns"], bin_ns),
                "busy": batch["busy_ns"],
                "dev": pc.subtract(batch["interval_end_ns"], batch["interval_start_ns"]),
            }
        )
        parts.append(t.group_by(["rack", "bin"]).aggregate([("busy", "sum"), ("dev", "sum")]))
    if not parts:
        return
    agg = (
        pa.concat_tables(parts)
        .group_by(["rack", "bin"])
        .aggregate([("busy_sum", "sum"), ("dev_sum", "sum")])
    )
    rack = agg["rack"].to_numpy()
    racks = np.unique(rack)
    per_row = -(-len(racks) // MAX_RACK_ROWS)
    row = np.searchsorted(racks, rack) // per_row
    col = np.minimum(agg["bin"].to_numpy(), MAX_COLUMNS - 1)
    n_rows, n_cols = int(row.max()) + 1, int(col.max()) + 1
    busy, dev = np.zeros((n_rows, n_cols)), np.zeros((n_rows, n_cols))
    np.add.at(busy, (row, col), agg["busy_sum_sum"].to_numpy())
    np.add.at(dev, (row, col), agg["dev_sum_sum"].to_numpy())
    util = np.where(dev > 0, busy / np.maximum(dev, 1), np.nan)
    data.heat = [[None if np.isnan(v) else float(v) for v in r] for r in util]
    data.heat_rows = [
        f"rack {racks[i * per_row]}"
        + (f"-{racks[min((i + 1) * per_row, len(racks)) - 1]}" if per_row > 1 else "")
        for i in range(n_rows)
    ]
    data.heat_edges_s = [k * bin_ns / 1e9 for k in range(n_cols + 1)]


def _device_interval(devices: Any) -> int:
    """The shortest device interval (ns) in the run."""
    shortest = None
    for batch in devices.to_batches(columns=["interval_start_ns", "interval_end_ns"]):
        if batch.num_rows:
            d = pc.min(pc.subtract(batch["interval_end_ns"], batch["interval_start_ns"])).as_py()
            shortest = d if shortest is None else min(shortest, d)
    return max(int(shortest or 1), 1)


def collect(run: Results, window_ns: int | None) -> PlotData:
    """All plot data of a run."""
    data = PlotData(title=f"mtia-cluster run {run.manifest.get('run_id', '')} ({run.path.name})")
    data.cdf = latency_cdfs(run)
    region_series(run, data, window_ns)
    utilization_heatmap(run, data)
    return data


def svgs(data: PlotData) -> list[str]:
    """The four charts as SVG strings."""
    xs = data.times_s
    ends = [t[-1] for t in xs.values() if t] + data.heat_edges_s[-1:]
    x_range = (0.0, max(ends)) if ends else None
    charts = [
        svg.line_chart(
            [(s, x, y) for s, (x, y) in data.cdf.items()],
            title="Latency CDF per service (requests with status ok)",
            xlabel="latency (ms, log scale)",
            ylabel="fraction of requests",
            log_x=True,
        ),
        svg.line_chart(
            [(r, xs[r], data.throughput[r]) for r in xs],
            title="Throughput per region",
            xlabel="time (s)",
            ylabel="completed requests/s",
            x_range=x_range,
        ),
        svg.line_chart(
            [(r, data.p99_times_s[r], data.p99_ms[r]) for r in data.p99_ms],
            title="p99 latency per region (per service where a region mixes R&R and LLM)",
            xlabel="time (s)",
            ylabel="p99 latency (ms)",
            x_range=x_range,
        ),
    ]
    if data.heat:
        charts.append(
            svg.heatmap(
                data.heat,
                row_labels=data.heat_rows,
                x_edges=data.heat_edges_s,
                x_range=x_range,
                title="Accelerator utilization per rack",
                xlabel="time (s)",
                ylabel="rack",
            )
        )
    charts.append(
        svg.line_chart(
            [(r, xs[r], data.power_w[r]) for r in xs],
            title="Power per region",
            xlabel="time (s)",
            ylabel="power (W)",
            x_range=x_range,
        )
    )
    return charts


def page_html(title: str, header_html: str, charts: list[str]) -> str:
    """A self-contained page (inline CSS and SVG only): title, header, one box per chart."""
    body = "\n".join(f'<div class="plot">{s}</div>' for s in charts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{HTML_GENERATOR}'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:24px;background:#fafafa}"
        ".plot{background:white;margin:12px 0;display:inline-block;border:1px solid #ddd}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right;white-space:nowrap}</style></head><body>"
        f"<h1>{escape(title)}</h1>{header_html}\n{body}\n</body></html>\n"
    )


def html_page(data: PlotData, table_html: str = "") -> str:
    """The run's report page: the summary table, then the charts."""
    return page_html(data.title, table_html, svgs(data))


def summary_table_html(doc: dict[str, Any]) -> str:
    """The analysis table as HTML."""
    from mtia_cluster.results.analysis.report import analysis_table

    headers, rows = analysis_table(doc)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{escape(svg.fmt(v) if isinstance(v, float) else str(v))}</td>" for v in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_plots(
    path: Path,
    run: Results,
    *,
    window_ns: int | None = None,
    doc: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the plots to `path` (.html or .png), atomically; `doc`: the table to show.
    `overwrite`: replace an earlier plot of the tool (mtia_cluster.output)."""
    check_plot_target(path)
    claim = claim_output(path, PLOT_FILE, overwrite=overwrite)
    data = collect(run, window_ns)
    if path.suffix.lower() == ".png":
        from mtia_cluster.results.analysis.plots_png import write_png

        with staged(claim) as tmp:
            write_png(tmp, data)
        return path
    page = html_page(data, summary_table_html(doc if doc is not None else analyze(run)))
    with staged(claim) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
