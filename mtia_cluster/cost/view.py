"""The console table of a summary's cost figures (issue #19): one row per (region, service)
group, per region and the fleet total, every figure read from the summary document (the
same dict `--json` prints and summary.json holds) and printed by the one formatter."""

from __future__ import annotations

from html import escape
from typing import Any

from mtia_cluster import fmt

COST_HEADERS = [
    "region",
    "service",
    "kWh (wall)",
    "cost $",
    "capex $",
    "energy $",
    "$/M queries",
    "$/M out tok",
    "gCO2e",
    "gCO2e/query",
    "gCO2e/out tok",
]


def _row(r: dict[str, Any]) -> list[Any]:
    return [
        r["region"],
        r["service"],
        r.get("facility_energy_kwh"),
        r.get("cost_usd"),
        r.get("capex_usd"),
        r.get("energy_cost_usd"),
        r.get("usd_per_m_queries"),
        r.get("usd_per_m_output_tokens"),
        r.get("co2e_g"),
        r.get("co2e_g_per_query"),
        r.get("co2e_g_per_output_token"),
    ]


def cost_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """Groups, then each region's total, then the fleet total (rows that carry cost)."""
    rows = [*summary.get("groups", []), *summary.get("regions", [])]
    if "fleet" in summary:
        rows.append(summary["fleet"])
    return [_row(r) for r in rows if "cost_usd" in r]


def analysis_cost_table(doc: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The cost figures of every row of an `analyze` document (keys as its main table)."""
    windowed = doc.get("window_ns") is not None
    headers = [*doc["by"], *(["t s"] if windowed else []), *COST_HEADERS[2:]]
    rows = []
    for r in doc["rows"]:
        keys: list[Any] = [r[k] for k in doc["by"]]
        if windowed:
            keys.append(r["window_start_ns"] / 1e9)
        rows.append(keys + _row(r)[2:])
    return headers, rows


def rollout_cost_line(summary: dict[str, Any]) -> str:
    """Energy at the wall, cost and carbon of a rollout summary (cost/rollout.py), one line."""
    return (
        f"at the wall {fmt.number(float(summary['facility_energy_mwh']))} MWh, cost "
        f"${summary['cost_usd']:,.0f} (capex ${summary['capex_usd']:,.0f}, energy "
        f"${summary['energy_cost_usd']:,.0f}), {fmt.number(float(summary['co2e_t']))} tCO2e"
    )


def cost_table_html(summary: dict[str, Any], doc: dict[str, Any] | None = None) -> str:
    """The cost table of the HTML report: `analyze`'s rows when `doc` is given, else
    summary.json's groups, regions and fleet; cells by the one formatter (as the console)."""
    headers, rows = (
        analysis_cost_table(doc) if doc is not None else (COST_HEADERS, cost_rows(summary))
    )
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(fmt.number(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    title = "<h3>cost, energy at the wall, carbon</h3>"
    return f'{title}<table class="cost"><tr>{head}</tr>{body}</table>'
