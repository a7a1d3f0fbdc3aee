"""Two analyses side by side: absolute and relative deltas, and which run meets the SLO where.

Rows are matched on their level, keys and window; a row present in one run only is kept with
the other side null. ``delta = b - a`` and ``relative = (b - a) / |a|`` (null when a is 0 or
either side is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtia_cluster.results.verdict import UNJUDGED

# (name, unit, getter) of every compared figure
FIGURES: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
    ("offered_per_s", "req/s", lambda r: r.get("offered_per_s")),
    ("completed_per_s", "req/s", lambda r: r.get("completed_per_s")),
    ("goodput_per_s", "req/s", lambda r: r.get("goodput_per_s")),
    ("latency_p50_ms", "ms", lambda r: _ms(r.get("latency_ns", {}).get("p50"))),
    ("latency_p90_ms", "ms", lambda r: _ms(r.get("latency_ns", {}).get("p90"))),
    ("latency_p99_ms", "ms", lambda r: _ms(r.get("latency_ns", {}).get("p99"))),
    ("latency_p99_9_ms", "ms", lambda r: _ms(r.get("latency_ns", {}).get("p99_9"))),
    ("ttft_p99_ms", "ms", lambda r: _ms((r.get("ttft_ns") or {}).get("p99"))),
    ("tpot_p99_ms", "ms", lambda r: _ms((r.get("tpot_ns") or {}).get("p99"))),
    ("utilization", "", lambda r: r.get("utilization")),
    ("avg_power_w", "W", lambda r: r.get("avg_power_w")),
    ("energy_per_request_j", "J", lambda r: r.get("energy_per_request_j")),
    ("requests_per_j", "req/J", lambda r: r.get("requests_per_j")),
    ("facility_energy_kwh", "kWh", lambda r: r.get("facility_energy_kwh")),  # cost (#19)
    ("cost_usd", "$", lambda r: r.get("cost_usd")),
    ("usd_per_m_queries", "$", lambda r: r.get("usd_per_m_queries")),
    ("co2e_g", "g", lambda r: r.get("co2e_g")),
]


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


def row_key(doc: dict[str, Any], row: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a row across runs: level, the keys, the window start."""
    return (row["level"], *(row[k] for k in doc["by"]), row.get("window_start_ns"))


def delta(a: float | None, b: float | None) -> dict[str, float | None]:
    """a, b, b - a and (b - a) / |a|."""
    if a is None or b is None:
        return {"a": a, "b": b, "delta": None, "relative": None}
    return {"a": a, "b": b, "delta": b - a, "relative": (b - a) / abs(a) if a else None}


def meets(va: dict[str, Any] | None, vb: dict[str, Any] | None) -> str | None:
    """Which run meets the SLO: both, a, b, neither; no_slo; None without verdicts."""
    if va is None and vb is None:
        return None
    ra = (va or {}).get("result")
    rb = (vb or {}).get("result")
    if ra in (None, *UNJUDGED) and rb in (None, *UNJUDGED):
        return "no_slo"
    ok_a, ok_b = ra == "VALID", rb == "VALID"
    return {(True, True): "both", (True, False): "a", (False, True): "b"}.get(
        (ok_a, ok_b), "neither"
    )


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The comparison document of two :func:`analyze` documents with the same grouping."""
    rows_a = {row_key(a, r): r for r in a["rows"]}
    rows_b = {row_key(b, r): r for r in b["rows"]}
    order = list(rows_a) + [k for k in rows_b if k not in rows_a]
    rows = []
    for key in order:
        ra, rb = rows_a.get(key), rows_b.get(key)
        any_row = ra or rb or {}
        out: dict[str, Any] = {"level": any_row["level"]}
        out.update({k: any_row[k] for k in a["by"]})
        if any_row.get("window_start_ns") is not None:
            out["window_start_ns"] = any_row["window_start_ns"]
        out["figures"] = {
            name: delta(get(ra) if ra else None, get(rb) if rb else None)
            for name, _, get in FIGURES
        }
        va, vb = (ra or {}).get("verdict"), (rb or {}).get("verdict")
        out["verdict"] = {"a": (va or {}).get("result"), "b": (vb or {}).get("result")}
        out["meets_slo"] = meets(va, vb)
        rows.append(out)
    return {
        "a": {"run": a["run"], "run_id": a.get("run_id"), "duration_ns": a["duration_ns"]},
        "b": {"run": b["run"], "run_id": b.get("run_id"), "duration_ns": b["duration_ns"]},
        "by": a["by"],
        "window_ns": a["window_ns"],
        "rows": rows,
    }
