"""`summary.json` and the `regions/` interval table, computed from the Parquet datasets.

Streaming by partition: requests are read one region (and, for fleet-wide figures, one
service) at a time, only the needed columns, so memory is bounded by the largest
region x service group, not the run. Quantiles are exact (numpy's default linear
interpolation over the group's ok requests); at 8 bytes per latency that is fine up to tens of
millions of requests per group. Beyond that, swap `_quantiles` for ``pyarrow.compute.tdigest``
per batch (approximate) - not needed at the fleet sizes the benchmarks use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mtia_cluster.results.devices import DeviceTotals, device_totals
from mtia_cluster.results.slo import ServiceSLO
from mtia_cluster.results.verdict import VerdictRules, metric_verdict, verdict

NS_PER_S = 1_000_000_000
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99_9": 0.999}
TOKEN_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
STATUSES = ("ok", "dropped", "rejected", "failed")
_COLUMNS = [
    "status",
    "arrival_ns",
    "first_token_ns",
    "finish_ns",
    "latency_ns",
    "slo_ok",
    "items",
    "output_tokens",
]


def _quantiles(values: np.ndarray, qs: Mapping[str, float]) -> dict[str, float | None]:
    """Exact quantiles (numpy linear interpolation); None for an empty group."""
    if len(values) == 0:
        return dict.fromkeys(qs)
    got = np.quantile(values, list(qs.values()))
    return {k: float(v) for k, v in zip(qs, got, strict=True)}


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Numpy views of the request columns; status as its index in STATUSES."""
    out = {n: table[n].to_numpy() for n in _COLUMNS if n != "status"}
    names = table["status"].cast(pa.string())
    out["status"] = pc.index_in(names, value_set=pa.array(STATUSES)).to_numpy()
    return out


def _token_metrics(c: dict[str, np.ndarray], ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TTFT of ok requests, and TPOT of ok requests with more than one output token."""
    ttft = (c["first_token_ns"] - c["arrival_ns"])[ok]
    steps = c["output_tokens"].astype(np.int64) - 1
    multi = ok & (steps > 0)
    tpot = (c["finish_ns"] - c["first_token_ns"])[multi] / steps[multi]
    return ttft, tpot


def _verdict(
    c: dict[str, np.ndarray], ok: np.ndarray, slo: ServiceSLO | None, rules: VerdictRules
) -> dict[str, Any]:
    """LoadGen-style verdict; requests not finished ok count as over every bound."""
    n = len(ok)
    metrics: list[dict[str, Any]] = []
    if slo is not None:
        p = slo.percentile / 100.0
        if slo.latency_ns is not None:
            over = int(np.count_nonzero(~ok | (c["latency_ns"] > slo.latency_ns)))
            metrics.append(
                metric_verdict(
                    name="latency", n=n, over=over, bound_ns=slo.latency_ns, p=p, rules=rules
                )
            )
        if slo.ttft_ns is not None:
            ttft = c["first_token_ns"] - c["arrival_ns"]
            over = int(np.count_nonzero(~ok | (ttft > slo.ttft_ns)))
            metrics.append(
                metric_verdict(name="ttft", n=n, over=over, bound_ns=slo.ttft_ns, p=p, rules=rules)
            )
        if slo.tpot_ns is not None:
            steps = c["output_tokens"].astype(np.int64) - 1
            late = (steps > 0) & (c["finish_ns"] - c["first_token_ns"] > slo.tpot_ns * steps)
            over = int(np.count_nonzero(~ok | late))
            metrics.append(
                metric_verdict(name="tpot", n=n, over=over, bound_ns=slo.tpot_ns, p=p, rules=rules)
            )
    last_arrival = int(c["arrival_ns"].max()) if n else 0
    return verdict(metrics, duration_ns=last_arrival, rules=rules)


def _kind(slo: ServiceSLO | None, c: dict[str, np.ndarray]) -> str:
    """The SLO's kind; without one, LLM when any request has output tokens."""
    if slo is not None:
        return slo.kind
    return "llm" if len(c["output_tokens"]) and int(c["output_tokens"].max()) > 0 else "rr"


def request_stats(
    table: pa.Table, *, slo: ServiceSLO | None, duration_ns: int, rules: VerdictRules
) -> dict[str, Any]:
    """Counts, rates, latency quantiles (and TTFT/TPOT for LLM) and verdict of one group."""
    c = _columns(table)
    seconds = max(duration_ns, 1) / NS_PER_S
    ok = c["status"] == 0
    by_code = np.bincount(c["status"], minlength=len(STATUSES))
    counts = {s: int(by_code[i]) for i, s in enumerate(STATUSES)}
    good = int(np.count_nonzero(c["slo_ok"]))
    out: dict[str, Any] = {
        "kind": _kind(slo, c),
        "offered": len(ok),
        "completed": counts["ok"],
        "good": good,
        **{s: counts[s] for s in STATUSES[1:]},
        "offered_per_s": len(ok) / seconds,
        "completed_per_s": counts["ok"] / seconds,
        "goodput_per_s": good / seconds,
        "items_per_s": float(c["items"][ok].sum()) / seconds,
        "output_tokens_per_s": float(c["output_tokens"][ok].sum()) / seconds,
        "output_tokens": int(c["output_tokens"][ok].sum()),
        "items": int(c["items"][ok].sum()),
        "latency_ns": {
            "mean": float(c["latency_ns"][ok].mean()) if counts["ok"] else None,
            "max": int(c["latency_ns"][ok].max()) if counts["ok"] else None,
            **_quantiles(c["latency_ns"][ok], QUANTILES),
        },
    }
    if out["kind"] == "llm":
        ttft, tpot = _token_metrics(c, ok)
        out["ttft_ns"] = _quantiles(ttft, TOKEN_QUANTILES)
        out["tpot_ns"] = _quantiles(tpot, TOKEN_QUANTILES)
    out["verdict"] = _verdict(c, ok, slo, rules)
    return out


def _with_devices(stats: dict[str, Any], dev: DeviceTotals | None) -> dict[str, Any]:
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
    return stats


def _read(dataset: ds.Dataset, expr: ds.Expression) -> pa.Table:
    """Only the summary's columns of the rows matching `expr`."""
    return dataset.to_table(columns=[*_COLUMNS, "service", "request_id"], filter=expr)


def compute_summary(
    requests: ds.Dataset,
    devices: ds.Dataset | None,
    *,
    services: Sequence[str],
    regions: Sequence[str],
    slos: Mapping[str, ServiceSLO],
    duration_ns: int,
    rules: VerdictRules,
    on_region: Callable[[str, pa.Table], None] | None = None,
) -> dict[str, Any]:
    """The `summary.json` document (see docs/results.md for every field).

    `on_region(region, table)` sees each region's requests once (the writer derives the
    `regions/` intervals and the request_id check from the same read).
    """
    dev = device_totals(devices)
    groups: list[dict[str, Any]] = []
    region_rows: list[dict[str, Any]] = []
    for region in regions:
        table = _read(requests, pc.field("region") == region)
        if on_region is not None:
            on_region(region, table)
        svc = table["service"].cast(pa.string())
        for service in services:
            part = table.filter(pc.equal(svc, service))
            if part.num_rows == 0 and (region, service) not in dev:
                continue
            stats = request_stats(part, slo=slos.get(service), duration_ns=duration_ns, rules=rules)
            groups.append(
                {
                    "region": region,
                    "service": service,
                    **_with_devices(stats, dev.get((region, service))),
                }
            )
        region_rows.append(_region_row(region, groups, dev, duration_ns))
    fleet_services = []
    for service in services:
        part = _read(requests, pc.field("service") == service)
        stats = request_stats(part, slo=slos.get(service), duration_ns=duration_ns, rules=rules)
        total = DeviceTotals.sum(v for (_, s), v in dev.items() if s == service)
        fleet_services.append({"region": "*", "service": service, **_with_devices(stats, total)})
    return {
        "duration_ns": int(duration_ns),
        "duration_s": duration_ns / NS_PER_S,
        "rules": rules.to_dict(),
        "quantile_method": "exact; numpy linear interpolation over requests with status ok",
        "groups": groups,
        "services": fleet_services,
        "regions": region_rows,
        "fleet": _region_row("*", groups, dev, duration_ns),
    }


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
    judged = [g for g in mine if g["verdict"]["result"] != "NO_SLO"]
    failing = [f"{g['region']}/{g['service']}" for g in judged if g["verdict"]["result"] != "VALID"]
    result = "NO_SLO" if not judged else ("INVALID" if failing else "VALID")
    row["verdict"] = {
        "result": result,
        "reasons": [f"{name} is INVALID" for name in failing],
    }
    total = DeviceTotals.sum(v for (r, _), v in dev.items() if region in ("*", r))
    return _with_devices(row, total)
