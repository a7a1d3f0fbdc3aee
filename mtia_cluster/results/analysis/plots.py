"""`analyze --plot FILE`: per-service panels (throughput, the service's own latency metrics at
p99 with the SLO, utilization; fleet events marked), latency CDF per service, a rack x time
utilization heatmap (rows region/rack/chip) and power per region, as a self-contained HTML
page or a PNG.

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
from mtia_cluster.cost.view import cost_table_html
from mtia_cluster.errors import UserError
from mtia_cluster.output import HTML_GENERATOR, PLOT_FILE, claim_output, staged
from mtia_cluster.results.analysis import svg
from mtia_cluster.results.analysis.core import analyze
from mtia_cluster.results.analysis.groups import Level, build_keys
from mtia_cluster.results.analysis.passes import LevelAcc, batches, first_pass, llm_mask
from mtia_cluster.results.analysis.report import (
    GROUP_HEADERS,
    group_rows,
    network_table_html,
    spill_table_html,
)
from mtia_cluster.results.analysis.service_panels import (
    ServicePanel,
    collect_panels,
    fleet_event_markers,
    panel_svgs,
)
from mtia_cluster.results.autoscale import replica_series
from mtia_cluster.results.hist import N_BUCKETS, bucket_lower_bound
from mtia_cluster.results.links import busiest_links, read_links
from mtia_cluster.results.reader import Results

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
    times_s: dict[str, list[float]] = field(default_factory=dict)  # power series, per region
    power_w: dict[str, list[float | None]] = field(default_factory=dict)
    heat: list[list[float | None]] = field(default_factory=list)
    heat_rows: list[str] = field(default_factory=list)
    heat_edges_s: list[float] = field(default_factory=list)
    panels: list[ServicePanel] = field(default_factory=list)
    markers: list[tuple[float, str]] = field(default_factory=list)  # fleet events (s, label)
    # autoscaled groups: (label, times s, replicas) steps (results/autoscale.py)
    replicas: list[tuple[str, list[float], list[float | None]]] = field(default_factory=list)
    links: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # links/


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
    """Accelerator power per region over time (regions/, or the window analysis); the
    services' own series are the per-service panels (service_panels.py)."""
    if window_ns is not None:
        doc = analyze(run, by=("region",), window_ns=window_ns)
        for r in doc["rows"]:
            if r["level"] not in ("region", "*"):
                continue
            name = r["region"] if r["level"] == "region" else "fleet"
            data.times_s.setdefault(name, []).append(r["window_start_ns"] / 1e9)
            data.power_w.setdefault(name, []).append(r.get("avg_power_w"))
        return
    table = run.regions.to_table()
    names = table["region"].cast(pa.string())
    covered_ns = _devices_end(run)  # no device data after this: power unknown, not 0 W
    end_ns = int(run.summary.get("duration_ns", 0)) or None
    for name in run.manifest.get("regions", []):
        t = table.filter(pc.equal(names, name)).sort_by("interval_start_ns")
        start = t["interval_start_ns"].to_numpy()
        # energy over the time each interval covers: the last one ends with the run
        seconds = (np.minimum(t["interval_end_ns"].to_numpy(), end_ns or 2**62) - start) / 1e9
        power = t["energy_j"].to_numpy() / np.maximum(seconds, 1e-9)
        data.times_s[name] = (start / 1e9).tolist()
        data.power_w[name] = [
            float(p) if b < covered_ns else None
            for p, b in zip(power.tolist(), start.tolist(), strict=True)
        ]


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
    parts: list[pa.Table] = []
    names: dict[int, tuple[str, set[str]]] = {}
    for batch in devices.to_batches(
        columns=["rack_id", "region", "chip", "interval_start_ns", "interval_end_ns", "busy_ns"]
    ):
        _rack_names(batch, names)
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
        _row_label(racks[i * per_row : (i + 1) * per_row].tolist(), names) for i in range(n_rows)
    ]
    data.heat_edges_s = [k * bin_ns / 1e9 for k in range(n_cols + 1)]


def _rack_names(batch: pa.RecordBatch, names: dict[int, tuple[str, set[str]]]) -> None:
    """Add rack_id -> (region, chips) of the racks in a devices/ batch to `names`."""
    t = (
        pa.table(
            {
                "rack": batch["rack_id"],
                "region": batch["region"].cast(pa.string()),
                "chip": batch["chip"].cast(pa.string()),
            }
        )
        .group_by(["rack", "region", "chip"])
        .aggregate([])
    )
    cols = (t["rack"].to_pylist(), t["region"].to_pylist(), t["chip"].to_pylist())
    for rack, region, chip in zip(*cols, strict=True):
        names.setdefault(int(rack), (str(region), set()))[1].add(str(chip))


def _row_label(racks: list[int], names: dict[int, tuple[str, set[str]]]) -> str:
    """region/rack N/chip (region/racks A-B/chip when a row merges racks; chips joined by +
    when a rack holds several generations, e.g. mid-rollout)."""
    region, chips = names.get(racks[0], ("?", {"?"}))
    which = f"rack {racks[0]}" if len(racks) == 1 else f"racks {racks[0]}-{racks[-1]}"
    return f"{region}/{which}/{'+'.join(sorted(chips))}"


def _device_interval(devices: Any) -> int:
    """The longest device interval (ns) in the run: the regular sampling step. (The last
    interval is cut at the run's end; binning by that shorter length left every other column
    without a row starting in it, grey stripes across the heat map.)"""
    longest = 0
    for batch in devices.to_batches(columns=["interval_start_ns", "interval_end_ns"]):
        if batch.num_rows:
            d = pc.max(pc.subtract(batch["interval_end_ns"], batch["interval_start_ns"])).as_py()
            longest = max(longest, int(d or 0))
    return max(longest, 1)


def collect(run: Results, window_ns: int | None) -> PlotData:
    """All plot data of a run."""
    data = PlotData(title=f"mtia-cluster run {run.manifest.get('run_id', '')} ({run.path.name})")
    data.cdf = latency_cdfs(run)
    region_series(run, data, window_ns)
    utilization_heatmap(run, data)
    data.panels = collect_panels(run, window_ns)
    data.markers = fleet_event_markers(run.manifest)
    data.replicas = replica_series(run.summary, int(run.summary.get("duration_ns", 0)) / 1e9)
    links = read_links(run.path)
    data.links = {} if links is None else busiest_links(links)
    return data


def svgs(data: PlotData) -> list[str]:
    """The charts as SVG strings, with an ``<h2>`` heading before each section."""
    ends = [t[-1] for t in data.times_s.values() if t] + data.heat_edges_s[-1:]
    x_range = (0.0, max(ends)) if ends else None
    charts: list[str] = []
    for panel in data.panels:  # one section per service, its charts side by side
        charts.append(f"<h2>{escape(panel.service)} ({escape(panel.kind)})</h2>")
        grid = "".join(
            f'<div class="plot">{c}</div>' for c in panel_svgs(panel, x_range, data.markers)
        )
        charts.append(f'<div class="multiples">{grid}</div>')
    if data.replicas:
        charts.append(
            svg.line_chart(
                data.replicas,
                title="Replicas over time per autoscaled region/service",
                xlabel="time (s)",
                ylabel="replicas",
                x_range=x_range,
                markers=data.markers,
                dashed=[label for label, _, _ in data.replicas if label.endswith("+starting")],
            )
        )
    return charts + _fleet_svgs(data, x_range)


def _fleet_svgs(data: PlotData, x_range: tuple[float, float] | None) -> list[str]:
    """The fleet section: latency CDF per service, utilization heatmap per rack, busiest
    fabric links, and power per region (time axes share `x_range` with the service panels)."""
    xs = data.times_s
    charts = [
        "<h2>Fleet</h2>",
        svg.line_chart(
            [(s, x, y) for s, (x, y) in data.cdf.items()],
            title="End-to-end latency CDF per service (requests with status ok)",
            xlabel="latency (ms, log scale)",
            ylabel="fraction of requests",
            log_x=True,
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
                ylabel="region/rack/chip",
            )
        )
    if data.links:
        charts.append(
            svg.line_chart(
                [(name, x, y) for name, (x, y) in data.links.items()],
                title="Fabric link utilization (busiest links, links/)",
                xlabel="time (s)",
                ylabel="utilization (bytes / bandwidth)",
                x_range=x_range,
                markers=data.markers,
            )
        )
    charts.append(
        svg.line_chart(
            [(r, xs[r], data.power_w[r]) for r in xs],
            title="Accelerator power per region (all services)",
            xlabel="time (s)",
            ylabel="power (W)",
            x_range=x_range,
            markers=data.markers,
        )
    )
    return charts


def page_html(title: str, header_html: str, charts: list[str]) -> str:
    """A self-contained page (inline CSS and SVG only): title, header, one box per chart."""
    body = "\n".join(
        s if s.startswith(("<h2", "<div")) else f'<div class="plot">{s}</div>' for s in charts
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{HTML_GENERATOR}'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:24px;background:#fafafa}"
        ".plot{background:white;margin:12px 0;display:inline-block;border:1px solid #ddd}"
        ".multiples{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));"
        "gap:8px}.multiples .plot{margin:0}.multiples svg{width:100%;height:auto}"
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

    return _table_html(*analysis_table(doc))


def groups_table_html(summary: dict[str, Any]) -> str:
    """summary.json's (region, service) groups as an HTML table: the console's rows."""
    return _table_html(GROUP_HEADERS, group_rows(summary), ' class="groups"')


def _table_html(headers: list[str], rows: list[list[Any]], attrs: str = "") -> str:
    """A table whose cells are formatted as the console formats them (fmt.number)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(fmt.number(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table{attrs}><tr>{head}</tr>{body}</table>"


def write_plots(
    path: Path,
    run: Results,
    *,
    window_ns: int | None = None,
    doc: dict[str, Any] | None = None,
    overwrite: bool = False,
    data: PlotData | None = None,
) -> Path:
    """Write the plots to `path` (.html or .png), atomically; `doc`: the table to show
    (default: summary.json's region x service groups); `data`: already collected plot data.
    `overwrite`: replace an earlier plot of the tool (mtia_cluster.output)."""
    check_plot_target(path)
    claim = claim_output(path, PLOT_FILE, overwrite=overwrite)
    data = data if data is not None else collect(run, window_ns)
    if path.suffix.lower() == ".png":
        from mtia_cluster.results.analysis.plots_png import write_png

        with staged(claim) as tmp:
            write_png(tmp, data)
        return path
    table = summary_table_html(doc) if doc is not None else groups_table_html(run.summary)
    tables = table + cost_table_html(run.summary, doc) + spill_table_html(run.summary)
    tables += network_table_html(run.summary)
    page = html_page(data, tables)
    with staged(claim) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
