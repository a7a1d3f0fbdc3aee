"""`summary.json` and the `regions/` interval table, computed from the Parquet datasets.

Streaming by partition: requests are read one region at a time, only the needed columns, so
the columns in memory are bounded by the largest region. Fleet-wide per-service figures merge
the regions' partial statistics (groupstats), which keep 4 bytes per ok request per quantile
metric when the values fit int32 (latency; TTFT and TPOT for LLM), else 8. Quantiles are
exact (numpy's default linear interpolation over the group's ok requests): a service's
fleet-wide quantiles need one copy of its values (360 M requests: 1.4 GB), partitioned in
place (docs/results.md "Streaming output"). A shard writer's statistics hold histograms
instead; their quantiles come from one collecting read (results/exact.py) and reach
`summary_from_partials` resolved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mtia_cluster.results.devices import DeviceTotals
from mtia_cluster.results.devstats import DeviceStats, totals_of
from mtia_cluster.results.groupstats import (
    COLUMNS,
    QUANTILES,
    STATUSES,
    TOKEN_QUANTILES,
    Partial,
    finish,
    merge,
    partial,
)
from mtia_cluster.results.replicas import group_stats, replica_rows_of
from mtia_cluster.results.schema import REQUEST_FILE_SCHEMA
from mtia_cluster.results.verdict import VerdictRules, combined_result
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.units import MEGA, NS_PER_S

# QUANTILES, STATUSES, TOKEN_QUANTILES live in groupstats; other modules import them from here.
__all__ = ["QUANTILES", "STATUSES", "TOKEN_QUANTILES", "compute_summary"]


def with_devices(stats: dict[str, Any], dev: DeviceTotals | None) -> dict[str, Any]:
    """Add utilization, energy, power and perf/W from the group's accelerators."""
    stats.update(dev.as_dict() if dev is not None else DeviceTotals().as_dict())
    energy = stats["energy_j"]
    per_j = (lambda x: x / energy) if energy > 0 else (lambda x: None)
    stats["requests_per_j"] = per_j(stats.get("completed", 0))
    stats["energy_per_request_j"] = (
        energy / stats["completed"] if energy > 0 and stats.get("completed") else None
    )
    if "output_tokens" in stats:
        stats["output_tokens_per_j"] = per_j(stats["output_tokens"])
        stats["items_per_j"] = per_j(stats["items"])
    return _with_unit_costs(stats)


def _with_unit_costs(stats: dict[str, Any]) -> dict[str, Any]:
    """Cost and carbon per million completed requests (queries) and, on a row of one LLM
    service (`kind` llm), per million output tokens (docs/planning.md); a row over several
    services (a region, the fleet) has none: its cost includes R&R hardware, which makes no
    tokens. summary.json and `analyze` both compute them here."""

    def per(total: float, count: int | None, scale: float) -> float | None:
        return total / count * scale if count else None

    cost, co2e = stats["cost_usd"], stats["co2e_g"]
    stats["usd_per_m_queries"] = per(cost, stats.get("completed"), MEGA)
    stats["co2e_g_per_query"] = per(co2e, stats.get("completed"), 1.0)
    if "output_tokens" in stats:
        tokens = stats["output_tokens"] if stats.get("kind") == "llm" else None
        stats["usd_per_m_output_tokens"] = per(cost, tokens, MEGA)
        stats["co2e_g_per_output_token"] = per(co2e, tokens, 1.0)
    return stats


def _read(dataset: ds.Dataset, expr: ds.Expression) -> pa.Table:
    """Only the summary's columns of the rows matching `expr`."""
    names = set(dataset.schema.names)
    optional = ("origin_region", "spill_rtt_ns", "network_ns")  # older runs: none
    spill = [c for c in optional if c in names]
    return dataset.to_table(columns=[*COLUMNS, "service", "request_id", *spill], filter=expr)


def compute_summary(
    requests: ds.Dataset,
    devices: DeviceStats | None,
    *,
    services: Sequence[str],
    regions: Sequence[str],
    slos: Mapping[str, ServiceSLO],
    duration_ns: int,
    rules: VerdictRules,
    on_region: Callable[[str, pa.Table], None] | None = None,
) -> dict[str, Any]:
    """The `summary.json` document (see docs/results.md for every field).

    `devices`: the run's per-accelerator totals (results/devstats.py). `on_region(region,
    table)` sees each region's requests once (the writer derives the `regions/` intervals
    and the request_id check from the same read).
    """

    def region_partials(region: str) -> dict[str, Partial]:
        table = _read(requests, pc.field("region") == region)
        if on_region is not None:
            on_region(region, table)
        svc = table["service"].cast(pa.string())
        out = {}
        for service in services:
            part = table.filter(pc.equal(svc, service))
            if part.num_rows:
                out[service] = partial(part, slos.get(service))
        return out

    return summary_from_partials(
        region_partials,
        totals_of(devices),
        services=services,
        regions=regions,
        slos=slos,
        duration_ns=duration_ns,
        rules=rules,
        replicas=replica_rows_of(devices),
    )


def empty_partial(slo: ServiceSLO | None) -> Partial:
    """The Partial of no requests (bounds counted at zero, as for an empty table)."""
    return partial(REQUEST_FILE_SCHEMA.empty_table(), slo)


def summary_from_partials(
    region_partials: Callable[[str], Mapping[str, Partial]],
    dev: Mapping[tuple[str, str | None], DeviceTotals],
    *,
    services: Sequence[str],
    regions: Sequence[str],
    slos: Mapping[str, ServiceSLO],
    duration_ns: int,
    rules: VerdictRules,
    replicas: Sequence[dict[str, Any]] = (),
    fleet_resolved: Mapping[str, Mapping[str, dict[str, float | None]]] | None = None,
) -> dict[str, Any]:
    """The `summary.json` document from each region's per-service partials (a service
    without requests in a region is absent), the device totals and the LLM replica rows
    (`results.replicas`); `dev` is `devstats.totals_of`: per group, and per service, region
    and the fleet ("*") summed over accelerators. Both paths (reading the requests back, or
    partials computed by the shards) end here. `fleet_resolved`: each service's fleet-wide
    quantiles when the partials are bounded (results/exact.py), else computed here."""
    groups: list[dict[str, Any]] = []
    region_rows: list[dict[str, Any]] = []
    spill: list[dict[str, Any]] = []
    partials: dict[str, list[Partial]] = {s: [] for s in services}
    for region in regions:
        mine = region_partials(region)
        spill += spill_flows(region, mine)
        for service in services:
            p = mine.get(service)
            if p is None:
                if (region, service) not in dev:
                    continue
                p = empty_partial(slos.get(service))
            partials[service].append(p)
            stats = finish(p, slo=slos.get(service), duration_ns=duration_ns, rules=rules)
            groups.append(
                {
                    "region": region,
                    "service": service,
                    **with_devices(stats, dev.get((region, service))),
                    **_serving(stats, replicas, region, service),
                }
            )
        region_rows.append(_region_row(region, groups, dev, duration_ns))
    fleet_services = []
    for service in services:
        merged = merge(partials.pop(service))
        if fleet_resolved is not None:
            merged.resolved = dict(fleet_resolved.get(service, {}))
        fleet_services.append(_fleet_row(merged, service, slos, dev, replicas, duration_ns, rules))
    return {
        "duration_ns": int(duration_ns),
        "duration_s": duration_ns / NS_PER_S,
        "rules": rules.to_dict(),
        "quantile_method": "exact; numpy linear interpolation over requests with status ok",
        "groups": groups,
        "services": fleet_services,
        "regions": region_rows,
        "fleet": _region_row("*", groups, dev, duration_ns),
        "llm_replicas": list(replicas),
        "spill": spill,
    }


def _fleet_row(
    merged: Partial,
    service: str,
    slos: Mapping[str, ServiceSLO],
    dev: Mapping[tuple[str, str | None], DeviceTotals],
    replicas: Sequence[dict[str, Any]],
    duration_ns: int,
    rules: VerdictRules,
) -> dict[str, Any]:
    """The fleet-wide row of one service from its regions' merged partial."""
    stats = finish(merged, slo=slos.get(service), duration_ns=duration_ns, rules=rules)
    total = dev.get(("*", service))  # summed over accelerators, as `analyze` sums
    stats = {**with_devices(stats, total), **_serving(stats, replicas, "*", service)}
    return {"region": "*", "service": service, **stats}


def _serving(
    stats: Mapping[str, Any], replicas: Sequence[dict[str, Any]], region: str, service: str
) -> dict[str, Any]:
    """An LLM group's `llm_serving` totals over its replicas (region '*': all regions)."""
    if stats.get("kind") != "llm":
        return {}
    mine = (r for r in replicas if r["service"] == service and region in ("*", r["region"]))
    return {"llm_serving": group_stats(mine)}


def spill_flows(region: str, partials: Mapping[str, Partial]) -> list[dict[str, Any]]:
    """Requests the global router served in `region` away from their home, per (origin,
    service), from the partials' `spilled_from` (docs/network.md)."""
    return [
        {"origin": origin, "destination": region, "service": service, "requests": n}
        for service, p in partials.items()
        for origin, n in sorted(p.spilled_from.items())
    ]


def _region_row(
    region: str,
    groups: list[dict[str, Any]],
    dev: Mapping[tuple[str, str | None], DeviceTotals],
    duration_ns: int,
) -> dict[str, Any]:
    """Totals over a region's groups ('*': the fleet), with all its accelerators' power."""
    mine = [g for g in groups if region in ("*", g["region"])]
    seconds = max(duration_ns, 1) / NS_PER_S
    row: dict[str, Any] = {"region": region, "service": "*"}
    for key in ("offered", "completed", "good", "dropped", "rejected", "failed"):
        row[key] = sum(g[key] for g in mine)
    row["offered_per_s"] = row["offered"] / seconds
    row["completed_per_s"] = row["completed"] / seconds
    row["goodput_per_s"] = row["good"] / seconds
    results = [g["verdict"]["result"] for g in mine]
    failing = [f"{g['region']}/{g['service']}" for g in mine if g["verdict"]["result"] == "INVALID"]
    row["verdict"] = {
        "result": combined_result(results),
        "reasons": [f"{name} is INVALID" for name in failing],
    }
    return with_devices(row, dev.get((region, "*")))  # region "*": the fleet


def region_kinds(summary: Mapping[str, Any]) -> dict[str, set[str]]:
    """The service kinds (rr, llm) each region was offered requests of, from a summary's
    groups: a figure over a region's services (its `regions/` latency quantiles, an analysis
    row) is not pooled across R&R and LLM services."""
    out: dict[str, set[str]] = {}
    for g in summary.get("groups", []):
        if g.get("offered"):
            out.setdefault(g["region"], set()).add(g["kind"])
    return out
