"""The one formatter of human-readable figures (tables, console lines, HTML reports).

Files carry raw units in their column names (``_ns``, ``_s``, ``_w``, ``_j``; utilization
a fraction); people read milliseconds, percent and thousands separators, converted here and
nowhere else. A missing figure (None or NaN) is ``-``.
"""

from __future__ import annotations

import math
from typing import Any

from mtia_cluster.units import NS_PER_MS, NS_PER_S

MISSING = "-"


def missing(v: Any) -> bool:
    """None, or a float NaN."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def ms(ns: float | None) -> float | None:
    """Nanoseconds as milliseconds (None stays None)."""
    return None if missing(ns) else float(ns) / NS_PER_MS  # type: ignore[arg-type]


def ms_from_s(s: float | None) -> float | None:
    """Seconds as milliseconds (None stays None)."""
    return None if missing(s) else float(s) * 1e3  # type: ignore[arg-type]


def pct(fraction: float | None) -> float | None:
    """A fraction (utilization, error rate) as percent (None stays None)."""
    return None if missing(fraction) else float(fraction) * 100.0  # type: ignore[arg-type]


def number(v: Any) -> str:
    """A table cell: floats with thousands separators and a few significant digits."""
    if missing(v):
        return MISSING
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9 or a < 1e-3:
        return f"{v:.3g}"
    if a < 100:
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    return f"{v:,.0f}"


def duration(ns: float) -> str:
    """A span of nanoseconds for a sentence (verdict reasons): ``100 ms`` below one second,
    else ``600 s``."""
    if abs(ns) < NS_PER_S:
        return f"{number(float(ns) / NS_PER_MS)} ms"
    return f"{number(float(ns) / NS_PER_S)} s"


def count(n: int, unit: str) -> str:
    """A count with its unit, singular or plural ("1 cell", "3 cells"): fleet events' cells
    in the console and the report's markers say it the same way."""
    return f"{n:,} {unit}{'' if n == 1 else 's'}"
