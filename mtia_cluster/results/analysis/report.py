"""Human-readable tables of an analysis and of a comparison (headers + rows for echo_table)."""

from __future__ import annotations

from typing import Any

from mtia_cluster import fmt
from mtia_cluster.results.analysis.compare import FIGURES

_LATENCY = (
    ("p50", "latency p50 ms"),
    ("p90", "latency p90 ms"),
    ("p99", "latency p99 ms"),
    ("p99_9", "latency p99.9 ms"),
)


GROUP_HEADERS = [
    "region",
    "service",
    "kind",
    "req/s",
    "rejected",
    "failed",
    "throughput",
    "unit",
    "latency/e2e p50 ms",
    "latency/e2e p99 ms",
    "TTFT p99 ms",
    "TPOT p99 ms",
    "util %",
    "power W",
    "per J",
    "verdict",
]


def group_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """One table row per (region, service) group of a summary document: the console's
    table of `simulate`/`replay`/`demo` and the HTML report's first table."""
    rows = []
    for g in summary["groups"]:
        llm = g.get("kind") == "llm"
        lat = g.get("latency_ns") or {}
        rows.append(
            [
                g["region"],
                g["service"],
                g.get("kind", "-"),
                g["completed_per_s"],
                g.get("rejected"),
                g.get("failed"),
                g.get("output_tokens_per_s") if llm else g.get("items_per_s"),
                "tok/s" if llm else "items/s",
                fmt.ms(lat.get("p50")),
                fmt.ms(lat.get("p99")),
                fmt.ms((g.get("ttft_ns") or {}).get("p99")) if llm else None,
                fmt.ms((g.get("tpot_ns") or {}).get("p99")) if llm else None,
                fmt.pct(g.get("utilization")),
                g.get("avg_power_w"),
                g.get("output_tokens_per_j") if llm else g.get("items_per_j"),
                g["verdict"]["result"],
            ]
        )
    return rows


def _ms(value: float | None) -> float | str:
    ms = fmt.ms(value)
    return fmt.MISSING if ms is None else ms


def _num(value: float | None) -> float | str:
    return fmt.MISSING if value is None else value


def analysis_table(doc: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One line per row: keys, rates, rejected and failed counts, latency/TTFT/TPOT
    quantiles, power, perf/W, verdict."""
    windowed = doc["window_ns"] is not None
    headers = [*doc["by"], *(["t s"] if windowed else [])]
    headers += ["offered/s", "done/s", "good/s", "rejected", "failed", *(h for _, h in _LATENCY)]
    headers += ["ttft p99 ms", "tpot p99 ms", "util %", "power W", "J/req", "req/J"]
    headers += [] if windowed else ["verdict"]
    rows = []
    for r in doc["rows"]:
        line: list[Any] = [r[k] for k in doc["by"]]
        if windowed:
            line.append(r["window_start_ns"] / 1e9)
        line += [r["offered_per_s"], r["completed_per_s"], r["goodput_per_s"]]
        line += [r["rejected"], r["failed"]]
        line += [_ms(r["latency_ns"][q]) for q, _ in _LATENCY]
        line += [_ms((r.get("ttft_ns") or {}).get("p99")), _ms((r.get("tpot_ns") or {}).get("p99"))]
        line += [_num(fmt.pct(r.get("utilization"))), _num(r.get("avg_power_w"))]
        line += [_num(r.get("energy_per_request_j")), _num(r.get("requests_per_j"))]
        if not windowed:
            line.append((r.get("verdict") or {}).get("result", "-"))
        rows.append(line)
    return headers, rows


def llm_serving_table(doc: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
    """LLM serving figures per service (replica `*`) then per replica (its lead accelerator):
    the analysis document's `llm_serving` (None when the run has no LLM replica)."""
    serving = doc.get("llm_serving") or {}
    if not serving.get("replicas"):
        return None
    headers = ["service", "region", "replica", "kv util mean %", "kv util peak %"]
    headers += ["prefix hit %", "preemptions", "kv transfers"]
    rows = []
    for r in [*serving["services"], *serving["replicas"]]:
        rows.append(
            [
                r["service"],
                r["region"],
                r.get("accelerator_id", "*"),
                _num(fmt.pct(r["kv_utilization_mean"])),
                _num(fmt.pct(r["kv_utilization_peak"])),
                _num(fmt.pct(r["prefix_lookup_hit_rate"])),
                r["preemptions"],
                r["kv_transfers"],
            ]
        )
    return headers, rows


def verdict_reasons(doc: dict[str, Any], limit: int = 3) -> list[str]:
    """First reasons of the INVALID rows of the finest level, one line each; the total's when
    no row of that level is INVALID (its slices may still be)."""
    level = doc["rows"][0]["level"] if doc["rows"] else None
    out: list[str] = []
    for wanted in (level, "*"):
        for r in doc["rows"]:
            v = r.get("verdict") or {}
            if r["level"] == wanted and v.get("result") == "INVALID":
                name = "/".join(str(r[k]) for k in doc["by"])
                out += [f"{name}: {reason}" for reason in v["reasons"][:limit]]
        if out:
            break
    return out


def comparison_table(doc: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Long format: one line per row and figure with a, b, delta and relative delta.

    Only the requested level and the total are shown (the JSON has every level).
    """
    first = doc["rows"][0]["level"] if doc["rows"] else None
    windowed = doc["window_ns"] is not None
    headers = [*doc["by"], *(["t s"] if windowed else []), "figure", "A", "B", "B-A", "B/A-1"]
    rows: list[list[Any]] = []
    for r in doc["rows"]:
        if r["level"] not in (first, "*"):
            continue
        keys = [r[k] for k in doc["by"]] + ([r["window_start_ns"] / 1e9] if windowed else [])
        for name, unit, _ in FIGURES:
            f = r["figures"][name]
            if f["a"] is None and f["b"] is None:
                continue
            rel = "-" if f["relative"] is None else f"{f['relative']:+.1%}"
            label = f"{name} ({unit})" if unit else name
            rows.append([*keys, label, _num(f["a"]), _num(f["b"]), _num(f["delta"]), rel])
        if not windowed:
            v = r["verdict"]
            rows.append([*keys, "verdict", v["a"] or "-", v["b"] or "-", "", _meets(r)])
    return headers, rows


def _meets(row: dict[str, Any]) -> str:
    return {
        "both": "both meet SLO",
        "a": "only A meets SLO",
        "b": "only B meets SLO",
        "neither": "neither meets SLO",
        "no_slo": "no SLO",
    }.get(row.get("meets_slo") or "", "-")


def spill_lines(doc: dict[str, Any]) -> list[str]:
    """One line per (origin, destination, service) the global router spilled requests over
    (summary.json ``spill``; none when regions are islands or nothing spilled)."""
    return [
        f"spill {f['origin']} -> {f['destination']} {f['service']}: {f['requests']} requests"
        for f in doc.get("spill", [])
    ]


def network_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``network_ns`` figures of summary.json's groups and services (region '*'), one
    row each (analyze --json ``network``); none when no request spent time on the network."""
    rows = [*summary.get("groups", []), *summary.get("services", [])]
    return [
        {"region": g["region"], "service": g["service"], "network_ns": g["network_ns"]}
        for g in rows
        if g.get("network_ns")
    ]


def network_table_html(summary: dict[str, Any]) -> str:
    """:func:`network_rows` as the HTML report's table (mean and p99 in ms, as the console
    lines); empty when no request spent time on the network."""
    rows = network_rows(summary)
    if not rows:
        return ""
    from html import escape

    head = "<tr><th>region</th><th>service</th><th>mean ms</th><th>p99 ms</th><th>requests</th>"
    body = "".join(
        f"<tr><td>{escape(str(r['region']))}</td><td>{escape(str(r['service']))}</td>"
        f"<td>{r['network_ns']['mean'] / 1e6:.3f}</td><td>{r['network_ns']['p99'] / 1e6:.3f}</td>"
        f"<td>{r['network_ns']['requests']:,}</td></tr>"
        for r in rows
    )
    title = "<h3>network time per request (network_ns: fabric transfers + spill RTT)</h3>"
    return f'{title}<table class="network">{head}</tr>{body}</table>'


def network_lines(doc: dict[str, Any]) -> list[str]:
    """One line per (region, service) whose requests spent time on the network: mean and
    p99 of ``network_ns`` (fabric transfers + spill RTT) over its ok requests, in ms."""
    out = []
    for row in doc.get("network", []):
        n = row["network_ns"]
        out.append(
            f"network {row['region']} {row['service']}: mean {n['mean'] / 1e6:.3f} ms, "
            f"p99 {n['p99'] / 1e6:.3f} ms ({n['requests']:,} requests with network time)"
        )
    return out


def spill_table_html(summary: dict[str, Any]) -> str:
    """The spill flows of :func:`spill_lines` as the HTML report's table (summary.json
    ``spill``, the figures the console and --json list); empty when nothing spilled."""
    flows = summary.get("spill") or []
    if not flows:
        return ""
    from html import escape

    head = "<tr><th>origin</th><th>destination</th><th>service</th><th>requests</th></tr>"
    body = "".join(
        f"<tr><td>{escape(str(f['origin']))}</td><td>{escape(str(f['destination']))}</td>"
        f"<td>{escape(str(f['service']))}</td><td>{f['requests']:,}</td></tr>"
        for f in flows
    )
    title = "<h3>spill flows (requests the global router sent to another region)</h3>"
    return f'{title}<table class="spill">{head}{body}</table>'
