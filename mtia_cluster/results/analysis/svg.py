"""Tiny dependency-free SVG charts: line charts (linear or log x) and a heatmap.

Everything is inline SVG text, so the HTML report opens offline with no scripts or fonts to
fetch. Values that are None or not finite are gaps in a line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 900, 340
LEFT, RIGHT, TOP, BOTTOM = 80, 170, 40, 50
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

Series = tuple[str, Sequence[float], Sequence[float | None]]


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """About `count` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(first + len(ticks) * step)
    return [round(t, 12) for t in ticks]


def fmt(v: float) -> str:
    """Short tick label."""
    a = abs(v)
    if a >= 1e6 or (0 < a < 1e-2):
        return f"{v:.2g}"
    if a >= 100 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:.3g}"


class _Axes:
    """Maps data to pixel coordinates inside the plot area."""

    def __init__(
        self,
        x: tuple[float, float],
        y: tuple[float, float],
        log_x: bool,
        left: float = LEFT,
        right: float = RIGHT,
    ) -> None:
        self.log_x, self.left, self.right = log_x, left, right
        self.x0, self.x1 = (math.log10(x[0]), math.log10(x[1])) if log_x else x
        self.y0, self.y1 = y
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0

    def px(self, x: float) -> float:
        v = math.log10(x) if self.log_x else x
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (WIDTH - self.left - self.right)

    def py(self, y: float) -> float:
        return HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def _frame(title: str, xlabel: str, ylabel: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(title)}</text>',
        f'<text class="xlabel" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 10}" '
        f'text-anchor="middle">{escape(xlabel)}</text>',
        f'<text class="ylabel" x="18" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(ylabel)}</text>',
    ]


def _grid(ax: _Axes, xticks: list[float], yticks: list[float]) -> list[str]:
    out = []
    bottom, top = HEIGHT - BOTTOM, TOP
    for t in yticks:
        y = ax.py(t)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - ax.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    for t in xticks:
        x = ax.px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{fmt(t)}</text>')
    out.append(
        f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - ax.right}" height="{bottom - top}" '
        'fill="none" stroke="#333"/>'
    )
    return out


def legend_right(labels: Sequence[str]) -> int:
    """The right margin that holds a legend of `labels` (swatch, gap, ~7 px per character
    at 12 px, a margin), at least RIGHT: the plot area narrows rather than the text being cut."""
    return max(RIGHT, 54 + 7 * max((len(label) for label in labels), default=0))


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_x: bool = False,
    y_min: float | None = 0.0,
    x_range: tuple[float, float] | None = None,
    markers: Sequence[tuple[float, str]] = (),
    bound: tuple[float, str] | None = None,
    dashed: Sequence[str] = (),
) -> str:
    """A line chart with a legend on the right; one polyline per contiguous run of values.

    Series labelled in `dashed` are drawn dashed and first, under the solid ones (a bound
    that often equals another series, as running + starting replicas equals running).

    `x_range` fixes the x axis (charts sharing a time axis line up); by default it is the
    data's range widened to round ticks. `markers`: (x, label) vertical dashed lines (fleet
    events); `bound`: (y, label) a horizontal dashed line (an SLO), always inside the axis.
    """
    xs = [x for _, sx, _ in series for x in _finite(sx) if not log_x or x > 0]
    ys = [y for _, _, sy in series for y in _finite(sy)] + ([bound[0]] if bound else [])
    if not xs or not ys:
        xs, ys = [1.0, 10.0], [0.0, 1.0]
    y_lo = min(ys) if y_min is None else min(y_min, min(ys))
    if log_x:
        lo_exp, hi_exp = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        xticks = [10.0**e for e in range(lo_exp, max(hi_exp, lo_exp + 1) + 1)]
    elif x_range is not None:
        xs += list(x_range)
        xticks = nice_ticks(min(xs), max(xs))
    else:
        xticks = nice_ticks(min(xs), max(xs))
    yticks = nice_ticks(y_lo, max(ys))
    x_lo, x_hi = (xticks[0], xticks[-1]) if x_range is None or log_x else (min(xs), max(xs))
    right = legend_right([label for label, _, _ in series])
    ax = _Axes((x_lo, x_hi), (yticks[0], yticks[-1]), log_x, right=right)
    xticks = [t for t in xticks if x_lo - 1e-9 * abs(x_hi - x_lo) <= t <= x_hi + 1e-9 * abs(x_hi)]
    out = _frame(title, xlabel, ylabel) + _grid(ax, xticks, yticks)
    order = sorted(range(len(series)), key=lambda i: series[i][0] not in dashed)
    for i in order:
        label, sx, sy = series[i]
        color = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if label in dashed else ""
        for run in _runs(sx, sy, log_x):
            pts = " ".join(f"{ax.px(x):.1f},{ax.py(y):.1f}" for x, y in run)
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} points="{pts}"/>'
            )
        ly = TOP + 14 + 18 * i
        out.append(
            f'<line x1="{WIDTH - right + 12}" x2="{WIDTH - right + 36}" y1="{ly}" y2="{ly}" '
            f'stroke="{color}" stroke-width="3"{dash}/>'
        )
        out.append(f'<text x="{WIDTH - right + 42}" y="{ly + 4}">{escape(label)}</text>')
    out += _annotations(ax, markers, bound, (x_lo, x_hi))
    out.append("</svg>")
    return "\n".join(out)


def _annotations(
    ax: _Axes,
    markers: Sequence[tuple[float, str]],
    bound: tuple[float, str] | None,
    x_span: tuple[float, float],
) -> list[str]:
    """Dashed event lines (labels stacked at the top) and a dashed bound line."""
    out = []
    for k, (x, label) in enumerate(markers):
        if not x_span[0] <= x <= x_span[1]:
            continue
        px = ax.px(x)
        out.append(
            f'<line class="marker" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
            'stroke="#555" stroke-dasharray="4 3"/>'
        )
        anchor = "start" if px < (LEFT + WIDTH - ax.right) / 2 else "end"
        dx = 4 if anchor == "start" else -4
        out.append(
            f'<text class="marker" x="{px + dx:.1f}" y="{TOP + 12 + 13 * (k % 4)}" '
            f'text-anchor="{anchor}" fill="#555" font-size="11">{escape(label)}</text>'
        )
    if bound is not None:
        py = ax.py(bound[0])
        out.append(
            f'<line class="bound" x1="{LEFT}" x2="{WIDTH - ax.right}" y1="{py:.1f}" y2="{py:.1f}" '
            'stroke="#d62728" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text class="bound" x="{WIDTH - ax.right - 4}" y="{py - 4:.1f}" text-anchor="end" '
            f'fill="#d62728" font-size="11">{escape(bound[1])}</text>'
        )
    return out


def _runs(
    xs: Sequence[float], ys: Sequence[float | None], log_x: bool
) -> list[list[tuple[float, float]]]:
    """Contiguous stretches of finite points (gaps where a value is missing)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        ok = y is not None and math.isfinite(float(y)) and (not log_x or x > 0)
        if ok:
            runs[-1].append((float(x), float(y)))  # type: ignore[arg-type]
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _color(v: float) -> str:
    """White (0) to dark blue (1) through light blue."""
    v = min(max(v, 0.0), 1.0)
    r, g, b = (int(255 + (c - 255) * v) for c in (8, 48, 107))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    matrix: Sequence[Sequence[float | None]],
    *,
    row_labels: Sequence[str],
    x_edges: Sequence[float],
    title: str,
    xlabel: str,
    ylabel: str,
    x_range: tuple[float, float] | None = None,
) -> str:
    """Rows x columns of values in [0, 1] (None: no data, grey), with a colour scale.

    The plot area starts right of the longest row label (7 px a character), so labels such
    as ``us-east/rack 0/mtia-2i`` are never clipped; the y label goes above the labels."""
    lo, hi = x_range if x_range is not None else (x_edges[0], x_edges[-1])
    left = max(LEFT, 7 * max((len(r) for r in row_labels), default=0) + 16)
    ax = _Axes((lo, hi), (0.0, float(len(row_labels))), False, left=left)
    out = _frame(title, xlabel, "")
    out.append(f'<text x="{left - 6}" y="{TOP - 6}" text-anchor="end">{escape(ylabel)}</text>')
    height = (HEIGHT - TOP - BOTTOM) / max(len(row_labels), 1)
    step = max(1, len(row_labels) // 12)
    for i, values in enumerate(matrix):
        y = TOP + i * height
        for j, v in enumerate(values):
            x0, x1 = ax.px(x_edges[j]), ax.px(x_edges[j + 1])
            fill = "#ccc" if v is None else _color(v)
            out.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0 + 0.3:.1f}" '
                f'height="{height + 0.3:.1f}" fill="{fill}"/>'
            )
        if i % step == 0:
            out.append(
                f'<text x="{left - 6}" y="{y + height / 2 + 4:.1f}" text-anchor="end">'
                f"{escape(row_labels[i])}</text>"
            )
    for t in nice_ticks(lo, hi):
        if lo - 1e-9 * abs(hi - lo) <= t <= hi + 1e-9 * abs(hi):
            x = ax.px(t)
            out.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{fmt(t)}</text>'
            )
    out.append(
        f'<rect x="{left}" y="{TOP}" width="{WIDTH - left - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}" fill="none" stroke="#333"/>'
    )
    for k in range(11):
        y = HEIGHT - BOTTOM - (k + 1) * (HEIGHT - TOP - BOTTOM) / 11
        out.append(
            f'<rect x="{WIDTH - RIGHT + 20}" y="{y:.1f}" width="20" '
            f'height="{(HEIGHT - TOP - BOTTOM) / 11 + 0.5:.1f}" fill="{_color(k / 10)}"/>'
        )
        if k % 5 == 0:
            out.append(f'<text x="{WIDTH - RIGHT + 46}" y="{y + 14:.1f}">{k * 10}%</text>')
    out.append("</svg>")
    return "\n".join(out)
