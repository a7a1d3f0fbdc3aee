"""`analyze ROLLOUT_DIR [--plot FILE]` on a `mtia-cluster rollout` output directory.

A rollout directory holds `timeline/`, `events/`, `replays/` and `summary.json` (docs/rollout.md),
not a replay run's manifest, so it gets its own small report: the summary as a table and,
with `--plot`, a wave Gantt chart (one row per region, grouped by wave, bars for its wave's
swapping, baking, rolling-back and paused phases) and capacity vs demand per region over
time (the demand offered to the region: with whole-region outages, own demand +- failover).
As for replay results, FILE.html is self-contained inline SVG (svg.py) and FILE.png
needs matplotlib (the optional `plot` extra, rollout_plots_png.py).

Long timelines are reduced to about MAX_POINTS points per region for drawing: each point
shows its stretch's lowest capacity and highest demand, so a dip below demand stays visible;
stretches are whole days (so every one holds the daily peak).
Replayed moments (`replays/`) are marked on the region's chart in the PNG (green: the replay
agrees with the timeline, red: it does not) and listed in the HTML page.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtia_cluster import fmt
from mtia_cluster.errors import UserError
from mtia_cluster.output import PLOT_FILE, claim_output, staged
from mtia_cluster.results.analysis import svg
from mtia_cluster.results.analysis.plots import check_plot_target, page_html
from mtia_cluster.results.analysis.rollout_plot_data import PHASE_COLORS, Bar, RolloutPlotData
from mtia_cluster.units import NS_PER_DAY

MAX_POINTS = 600
SMALL_MULTIPLES_OVER = 4  # regions: more than this get a grid of reduced charts
_PHASE_START = {"wave_start": "swapping", "wave_swapped": "baking",
                "rollback_start": "rolling_back", "pause": "paused"}  # fmt: skip
_PHASE_END = {"wave_swapped", "gate_pass", "gate_fail", "rollback_done"}


def is_rollout_dir(path: Path) -> bool:
    """True for a `mtia-cluster rollout` output directory."""
    return (path / "summary.json").is_file() and (path / "timeline").is_dir()


def load_summary(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((path / "summary.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable rollout summary.json: {exc}", file=path) from None


def collect(path: Path) -> RolloutPlotData:
    """Timeline series per region and Gantt bars from a rollout directory."""
    summary = load_summary(path)
    try:
        tl = pq.read_table(path / "timeline").to_pydict()
        ev = pq.read_table(path / "events").to_pydict()
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable rollout timeline/events: {exc}", file=path) from None
    horizon = float(summary.get("horizon_days") or 0.0)
    data = RolloutPlotData(title=f"rollout {summary.get('plan', path.name)}", horizon_days=horizon)
    region = np.asarray(tl["region"])
    t_day = np.asarray(tl["time_ns"], dtype=np.float64) / NS_PER_DAY
    cap = np.asarray(tl["capacity_rps"], dtype=np.float64)
    # the demand offered to the region: its own, less what a down region sent away, plus the
    # failover it received (docs/rollout.md, whole-region outages); older outputs: own demand
    dem = np.asarray(tl.get("offered_rps", tl["demand_rps"]), dtype=np.float64)
    step_day = float(summary.get("step_h") or 1.0) / 24.0
    for name in dict.fromkeys(region.tolist()):
        sel = np.flatnonzero(region == name)
        sel = sel[np.argsort(t_day[sel], kind="stable")]
        data.regions.append(name)
        days, lo_cap, hi_dem = envelope(t_day[sel], cap[sel], dem[sel], MAX_POINTS, step_day)
        data.days[name], data.capacity[name], data.demand[name] = days, lo_cap, hi_dem
    for r in summary.get("replays", []):
        point = (float(r["day"]), float(r["demand_rps"]), bool(r["agrees"]))
        data.moments.setdefault(str(r["region"]), []).append(point)
    _gantt(data, summary, ev, float(t_day.max()) if len(t_day) else horizon)
    _marks(data, summary, ev)
    return data


_MARKED = {"gate_pass": "gate pass", "gate_fail": "gate FAIL", "rollback_start": "rollback",
           "rollback_done": "rolled back"}  # fmt: skip


def _marks(data: RolloutPlotData, summary: dict[str, Any], ev: dict[str, list[Any]]) -> None:
    """Gates and rollbacks of each wave, on the charts of the wave's regions."""
    waves = summary.get("waves", [])
    for t, wave, region, kind in zip(
        ev["time_ns"], ev["wave"], ev["region"], ev["event"], strict=True
    ):
        if kind not in _MARKED or not 0 <= int(wave) < len(waves):
            continue
        label = f"{_MARKED[kind]} w{int(wave)}"
        for name in [region] if region else waves[int(wave)].get("regions", []):
            data.marks.setdefault(str(name), []).append((int(t) / NS_PER_DAY, label))


def envelope(
    days: np.ndarray, cap: np.ndarray, dem: np.ndarray, max_points: int, step_day: float
) -> tuple[list[float], list[float], list[float]]:
    """About `max_points` points: per stretch of equal length, its first day, lowest capacity
    and highest demand (all points when there are few). Stretches are whole days, so every
    one holds a daily peak and trough (a stretch of half a day would alternate)."""
    if len(days) <= max_points:
        return days.tolist(), cap.tolist(), dem.tolist()
    size = -(-len(days) // max_points)
    per_day = max(1, round(1.0 / step_day))
    size = -(-size // per_day) * per_day  # whole days: each stretch holds a daily peak
    starts = np.arange(0, len(days), size)
    return (
        days[starts].tolist(),
        np.minimum.reduceat(cap, starts).tolist(),
        np.maximum.reduceat(dem, starts).tolist(),
    )


def _gantt(
    data: RolloutPlotData, summary: dict[str, Any], ev: dict[str, list[Any]], end: float
) -> None:
    """One row per region of each wave; bars for the wave's phases from its events."""
    waves = summary.get("waves", [])
    first_row: list[int] = []
    for i, w in enumerate(waves):
        first_row.append(len(data.rows))
        suffix = " (cancelled)" if w.get("state") == "cancelled" else ""
        data.rows += [f"w{i} {r}{suffix}" for r in w.get("regions", [])]
    open_: dict[int, tuple[str, float]] = {}
    order = np.argsort(np.asarray(ev["time_ns"], dtype=np.int64), kind="stable")
    for j in order.tolist():
        wave, kind = int(ev["wave"][j]), str(ev["event"][j])
        if ev["region"][j] != "" or not 0 <= wave < len(waves):
            continue
        day = int(ev["time_ns"][j]) / NS_PER_DAY
        if kind in _PHASE_END and wave in open_:
            _close(data, waves, first_row, wave, open_.pop(wave), day)
        if kind in _PHASE_START:
            if wave in open_:
                _close(data, waves, first_row, wave, open_.pop(wave), day)
            open_[wave] = (_PHASE_START[kind], day)
    for wave, phase in open_.items():
        _close(data, waves, first_row, wave, phase, max(end, phase[1]))


def _close(
    data: RolloutPlotData,
    waves: list[dict[str, Any]],
    first_row: list[int],
    wave: int,
    phase: tuple[str, float],
    day: float,
) -> None:
    """A bar from the phase's start to `day` on every row of the wave."""
    for k in range(len(waves[wave].get("regions", []))):
        data.bars.append(Bar(first_row[wave] + k, phase[1], day, phase[0]))


def gantt_svg(data: RolloutPlotData) -> str:
    """The wave Gantt chart as inline SVG (rows top to bottom in wave order)."""
    hi = max([data.horizon_days] + [b.end_day for b in data.bars] + [1.0])
    n = max(len(data.rows), 1)
    height = (svg.HEIGHT - svg.TOP - svg.BOTTOM) / n
    font = min(12, max(7, int(height)))
    # the plot starts right of the longest label (~0.6 em a character): never clipped
    left = max(svg.LEFT, int(0.62 * font * max((len(r) for r in data.rows), default=0)) + 14)
    ax = svg._Axes((0.0, hi), (0.0, float(n)), False, left=left)
    out = svg._frame("Waves (Gantt)", "day", "")
    out.append(f'<text x="{left - 6}" y="{svg.TOP - 6}" text-anchor="end">wave region</text>')
    for i, label in enumerate(data.rows):
        y = svg.TOP + i * height
        out.append(
            f'<text x="{left - 6}" y="{y + height / 2 + 4:.1f}" text-anchor="end" '
            f'font-size="{font}">{escape(label)}</text>'
        )
    for b in data.bars:
        x0, x1 = ax.px(b.start_day), ax.px(b.end_day)
        y = svg.TOP + b.row * height
        out.append(
            f'<rect class="bar {b.phase}" x="{x0:.1f}" y="{y + 1:.1f}" '
            f'width="{max(x1 - x0, 1.0):.1f}" height="{max(height - 2, 1):.1f}" '
            f'fill="{PHASE_COLORS[b.phase]}"/>'
        )
    for t in svg.nice_ticks(0.0, hi):
        if t <= hi:
            x = ax.px(t)
            out.append(
                f'<text x="{x:.1f}" y="{svg.HEIGHT - svg.BOTTOM + 16}" '
                f'text-anchor="middle">{svg.fmt(t)}</text>'
            )
    out.append(
        f'<rect x="{left}" y="{svg.TOP}" width="{svg.WIDTH - left - svg.RIGHT}" '
        f'height="{svg.HEIGHT - svg.TOP - svg.BOTTOM}" fill="none" stroke="#333"/>'
    )
    for k, (phase, color) in enumerate(PHASE_COLORS.items()):
        ly = svg.TOP + 14 + 18 * k
        out.append(
            f'<rect x="{svg.WIDTH - svg.RIGHT + 12}" y="{ly - 6}" width="24" height="12" '
            f'fill="{color}"/><text x="{svg.WIDTH - svg.RIGHT + 42}" y="{ly + 4}">{phase}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def region_svgs(data: RolloutPlotData) -> list[str]:
    """Capacity vs demand over time, one chart per region (shared day axis), with the
    region's gates and rollbacks as dashed lines."""
    x_range = (0.0, max(data.horizon_days, 1.0))
    return [
        svg.line_chart(
            [
                ("capacity", data.days[r], data.capacity[r]),
                ("demand", data.days[r], data.demand[r]),
            ],
            title=f"{r}: capacity vs demand",
            xlabel="day",
            ylabel="requests/s",
            x_range=x_range,
            markers=data.marks.get(r, []),
        )
        for r in data.regions
    ]


def report_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Per region: minimum headroom, when, and SLO-violation minutes."""
    rows = [
        [r["region"], r["min_headroom"], r["min_headroom_day"], r["slo_violation_minutes"]]
        for r in summary.get("regions", [])
    ]
    return ["region", "min_headroom", "at_day", "slo_violation_min"], rows


def headline(summary: dict[str, Any]) -> str:
    def days(x: Any) -> str:
        return "not reached" if x is None else f"{x:.1f} days"

    return (
        f"rollout {summary.get('plan')}: waves {', '.join(summary.get('final_states', []))}; "
        f"full rollout {days(summary.get('time_to_full_rollout_days'))}, done after bake "
        f"{days(summary.get('time_to_rollout_done_days'))}; rollbacks {summary.get('rollbacks')}; "
        f"gates on {summary.get('gate_metrics', 'timeline')} metrics; replays "
        f"{len(summary.get('replays', []))} ({summary.get('replay_disagreements', 0)} disagree)"
        + _drill_and_outages(summary)
    )


def _drill_and_outages(summary: dict[str, Any]) -> str:
    """N-1 drill and whole-region outage figures, when the run had them."""
    out = ""
    d = summary.get("drill")
    if d:
        out += f"; N-1 drill ({d['racks']} rack(s)) OK in {d['n1_ok']} of {d['moments']} moments"
    o = summary.get("outages") or {}
    if o.get("count"):
        worst = o.get("worst_headroom_during")
        out += (
            f"; region outages {o['count']} ({o['outage_minutes']:g} region-minutes, failover "
            f"{o['failover']}, worst headroom elsewhere "
            f"{'-' if worst is None else f'{worst:.3f}'}, SLO-violation minutes caused "
            f"{o['slo_violation_minutes_caused']:g})"
        )
    return out


def html_page(data: RolloutPlotData, summary: dict[str, Any]) -> str:
    headers, rows = report_rows(summary)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    header = (
        f"<p>{escape(headline(summary))}</p><table><tr>{head}</tr>{body}</table>\n"
        f"{replay_table_html(summary)}"
    )
    regions = region_svgs(data)
    if len(regions) > SMALL_MULTIPLES_OVER:  # small multiples: a grid of reduced charts
        grid = "".join(f'<div class="plot">{c}</div>' for c in regions)
        regions = [f'<div class="multiples">{grid}</div>']
    return page_html(data.title, header, [gantt_svg(data), *regions])


REPLAY_COLUMNS = ("kind", "wave", "region", "day", "racks_old_serving", "racks_new_serving",
                  "demand_rps", "capacity_rps", "replayed_throughput_rps", "p99_s", "new_p99_s",
                  "new_error_rate", "verdict", "agrees")  # fmt: skip


def replay_table_html(summary: dict[str, Any]) -> str:
    """The replayed moments as an HTML table (empty string when there are none)."""
    rows = summary.get("replays", [])
    if not rows:
        return ""
    cols: tuple[str, ...] = REPLAY_COLUMNS
    if any(r.get("drill_verdict") for r in rows):
        cols = (*cols, "drill_p99_before_s", "drill_p99_after_s", "drill_verdict")
    head = "".join(f"<th>{escape(_header(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(_human(c, r.get(c))))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<h2>Exact replays</h2><table><tr>{head}</tr>{body}</table>\n"


def _header(col: str) -> str:
    """People read latencies in ms and rates in %: `p99_s` -> `p99 ms`, `x_rate` -> `x_rate %`."""
    if "p99" in col and col.endswith("_s"):
        return col[:-2] + " ms"
    return col + " %" if col.endswith("error_rate") else col


def _human(col: str, v: Any) -> Any:
    """The value for `_header(col)` (mtia_cluster.fmt, the one formatter)."""
    if "p99" in col and col.endswith("_s"):
        return fmt.ms_from_s(v) if isinstance(v, (int, float)) else v
    if col.endswith("error_rate"):
        return fmt.pct(v) if isinstance(v, (int, float)) else v
    return v


def _cell(v: Any) -> str:
    """A table cell as people read it: no Python None/True/False."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return fmt.number(v) if isinstance(v, float) else str(v)


def write_rollout_plots(path: Path, run_dir: Path, *, overwrite: bool = False) -> Path:
    """Write the rollout plots to `path` (.html or .png), atomically (`overwrite`: replace
    an earlier plot of the tool)."""
    check_plot_target(path)
    claim = claim_output(path, PLOT_FILE, overwrite=overwrite)
    data = collect(run_dir)
    if path.suffix.lower() == ".png":
        from mtia_cluster.results.analysis.rollout_plots_png import write_png

        with staged(claim) as tmp:
            write_png(tmp, data)
        return path
    page = html_page(data, load_summary(run_dir))
    with staged(claim) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
