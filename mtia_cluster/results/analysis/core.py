"""`analyze`: a results directory -> rows of rates, goodput, quantiles, power and verdicts.

Rows are grouped by the requested keys (default region x service), then by each key alone,
then the whole run (``*``); with a window each row is one key combination in one window. Every
figure is computed by streaming `requests/` twice and `devices/` once (see passes.py and
hist.py); derived fields (utilization, power, perf/W) and the MLPerf-LoadGen-style verdict reuse
summary.py, devices.py and verdict.py, so without a window the region x service rows equal
`summary.json`'s groups exactly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.results.analysis.device_groups import device_groups, max_interval_start
from mtia_cluster.results.analysis.groups import Keys, build_keys, make_levels
from mtia_cluster.results.analysis.passes import (
    METRICS,
    LevelAcc,
    batches,
    bounds_by_service,
    first_pass,
    llm_mask,
    second_pass,
)
from mtia_cluster.results.analysis.report import network_rows
from mtia_cluster.results.derive import span_from_metadata
from mtia_cluster.results.devices import DeviceTotals
from mtia_cluster.results.reader import Results, open_results
from mtia_cluster.results.replicas import group_stats, replica_rows
from mtia_cluster.results.summary import region_kinds, with_devices
from mtia_cluster.results.verdict import (
    VerdictRules,
    combined_result,
    metric_verdict,
    verdict,
)
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.units import NS_PER_S

QUANTILE_METHOD = (
    "exact; numpy linear interpolation over requests with status ok (two streaming passes)"
)


def _windows(res: Results, window_ns: int | None, duration_ns: int) -> int:
    """Number of windows: cover the span, the last arrival/finish and the last device interval."""
    if window_ns is None:
        return 1
    latest = max(span_from_metadata(res.requests), max_interval_start(res.devices))
    return max(-(-duration_ns // window_ns), latest // window_ns + 1, 1)


def analyze(
    path: str | Path | Results,
    *,
    by: tuple[str, ...] = ("region", "service"),
    window_ns: int | None = None,
) -> dict[str, Any]:
    """The analysis document (docs/results.md, "Analyze"); UserError for a bad directory."""
    res = path if isinstance(path, Results) else open_results(path)
    services = list(res.manifest.get("services", []))
    regions = list(res.manifest.get("regions", []))
    duration_ns = int(res.summary.get("duration_ns", res.manifest.get("simulated_span_ns", 0)))
    rules = VerdictRules(**res.manifest.get("verdict_rules", {}))
    kinds = {e["service"]: e["kind"] for e in res.summary.get("services", [])}
    keys = build_keys(regions, services, res.devices)
    levels = make_levels(by, keys, _windows(res, window_ns, duration_ns))
    judged = window_ns is None
    accs = [LevelAcc(level, len(services) + 1, judged, len(regions) + 1) for level in levels]
    bounds, llm = bounds_by_service(services, res.slos), llm_mask(services, kinds)
    for b in batches(res.requests, keys, window_ns, levels[0].windows):
        for acc in accs:
            first_pass(acc, b, llm, bounds)
    second_pass(accs, lambda: batches(res.requests, keys, window_ns, levels[0].windows), llm)
    devs = device_groups(res.devices, keys, levels, window_ns)
    ctx = _Context(keys, by, services, kinds, res.slos, rules, duration_ns, window_ns)
    ctx.region_kinds = region_kinds(res.summary)
    ctx.replicas = replica_rows(res.devices)
    rows = [row for acc, dev in zip(accs, devs, strict=True) for row in ctx.rows(acc, dev)]
    return {
        "run": str(res.path),
        "run_id": res.manifest.get("run_id"),
        "by": list(by),
        "window_ns": window_ns,
        "duration_ns": duration_ns,
        "rules": rules.to_dict(),
        "quantile_method": QUANTILE_METHOD,
        "rows": rows,
        "llm_serving": llm_serving(ctx.replicas, services),
        # requests served away from home (global routing, docs/network.md): summary.json's
        "spill": list(res.summary.get("spill", [])),
        # per-request network time (docs/network.md): summary.json's, per group and service
        "network": network_rows(res.summary),
    }


def llm_serving(replicas: list[dict[str, Any]], services: list[str]) -> dict[str, Any]:
    """Per LLM service (all regions) and per replica: KV utilization, prefix lookups, hit
    rate, preemptions, KV transfers (`results.replicas`, the figures of summary.json)."""
    names = [s for s in services if any(r["service"] == s for r in replicas)]
    totals = [
        {"region": "*", "service": s, **group_stats(r for r in replicas if r["service"] == s)}
        for s in names
    ]
    return {"services": totals, "replicas": replicas}


class _Context:
    """What turning accumulators into rows needs (labels, SLOs, rules, time base)."""

    region_kinds: dict[str, set[str]]  # kinds served per region (rows over mixed kinds)
    replicas: list[dict[str, Any]]  # LLM replica rows (results.replicas)

    def __init__(
        self,
        keys: Keys,
        by: tuple[str, ...],
        services: list[str],
        kinds: dict[str, str],
        slos: dict[str, ServiceSLO],
        rules: VerdictRules,
        duration_ns: int,
        window_ns: int | None,
    ) -> None:
        self.keys, self.by, self.services, self.kinds = keys, by, services, kinds
        self.slos, self.rules = slos, rules
        self.duration_ns, self.window_ns = duration_ns, window_ns

    def rows(self, acc: LevelAcc, dev: dict[int, DeviceTotals]) -> list[dict[str, Any]]:
        """One row per active group of the level (every window of an active key combination)."""
        lv = acc.level
        active = {int(g) for g in np.flatnonzero(sum(acc.counts.values()))} | set(dev)
        combos = sorted({g // lv.windows for g in active} | ({0} if not lv.dims else set()))
        out = []
        for combo in combos:
            codes, _ = lv.decode(combo * lv.windows)
            if "service" in codes and codes["service"] == self.keys.size("service") - 1:
                continue  # idle accelerators: no service to report
            for w in range(lv.windows):
                out.append(self._row(acc, dev, combo * lv.windows + w))
        return out

    def _row(self, acc: LevelAcc, dev: dict[int, DeviceTotals], gid: int) -> dict[str, Any]:
        lv = acc.level
        codes, window = lv.decode(gid)
        row: dict[str, Any] = {"level": ",".join(lv.dims) or "*"}
        for dim in self.by:
            row[dim] = self.keys.labels[dim][codes[dim]] if dim in codes else "*"
        seconds = (self.window_ns or max(self.duration_ns, 1)) / NS_PER_S
        if self.window_ns is not None:  # a rate over the time the window covers (the last
            left = self.duration_ns - window * self.window_ns  # one ends with the run)
            seconds = (min(self.window_ns, left) if left > 0 else self.window_ns) / NS_PER_S
            row["window_start_ns"] = window * self.window_ns
            row["window_end_ns"] = (window + 1) * self.window_ns
        service = self.keys.labels["service"][codes["service"]] if "service" in codes else None
        region = self.keys.labels["region"][codes["region"]] if "region" in codes else None
        row.update(self._stats(acc, gid, seconds, service, region))
        with_devices(row, dev.get(gid))
        if self._serving_row(service, lv.dims):
            mine = (r for r in self.replicas if r["service"] == service)
            row["llm_serving"] = group_stats(r for r in mine if region in (None, r["region"]))
        row["verdict"] = self._verdict(acc, gid, service) if acc.judged else None
        return row

    def _serving_row(self, service: str | None, dims: Any) -> bool:
        """Whether a row gets `llm_serving`: an LLM service's row by region and/or service,
        not windowed (the rows that match summary.json's groups and services)."""
        llm = service is not None and self.kinds.get(service) == "llm"
        return llm and self.window_ns is None and set(dims) <= {"region", "service"}

    def _stats(
        self, acc: LevelAcc, gid: int, seconds: float, service: str | None, region: str | None
    ) -> dict[str, Any]:
        c = {k: int(v[gid]) for k, v in acc.counts.items()}
        q = {m: acc.quantiles.get(m, {}).get(gid, {}) for m in METRICS}
        kind = self.kinds.get(service, "rr") if service is not None else None
        done = c["completed"]
        out: dict[str, Any] = {
            "kind": kind,
            "offered": c["offered"],
            "completed": done,
            "good": c["good"],
            **{s: c[s] for s in ("dropped", "rejected", "failed")},
            "offered_per_s": c["offered"] / seconds,
            "completed_per_s": done / seconds,
            "goodput_per_s": c["good"] / seconds,
            "items_per_s": c["items"] / seconds,
            "output_tokens_per_s": c["tokens"] / seconds,
            "output_tokens": c["tokens"],
            "items": c["items"],
            "latency_ns": {
                "mean": float(acc.latency_sum[gid]) / done if done else None,
                "max": int(acc.latency_max[gid]) if done else None,
                **_quantile_fields(q["latency"], METRICS["latency"]),
            },
        }
        if kind is None and self._mixed(region):
            # a row over R&R and LLM services: end-to-end latencies of ms and of s are not one
            # distribution; no pooled figure (each service's row has its own)
            out["latency_ns"] = dict.fromkeys(out["latency_ns"])
        if kind == "llm" or (kind is None and q["ttft"]):
            out["ttft_ns"] = _quantile_fields(q["ttft"], METRICS["ttft"])
            out["tpot_ns"] = _quantile_fields(q["tpot"], METRICS["tpot"])
        if kind == "llm":
            out["input_tokens"] = c["input_tokens"]
            out["preemptions"] = c["preemptions"]
            out["kv_allocation_failures"] = c["kv_failures"]
            out["prefix_cache_hit_rate"] = (
                c["cached_tokens"] / c["input_tokens"] if c["input_tokens"] else None
            )
        return out

    def _mixed(self, region: str | None) -> bool:
        """Whether a row over every service of `region` (None: of the fleet, or a rack or
        generation, judged fleet-wide) mixes R&R and LLM services."""
        every = set(self.kinds.values())
        kinds = getattr(self, "region_kinds", {}).get(region, every) if region else every
        return len(kinds) > 1

    def _service_verdict(
        self, acc: LevelAcc, gid: int, s: int, region: int | None
    ) -> dict[str, Any]:
        """LoadGen verdict of service code `s` in group `gid` (one region, or all of them)."""
        regions = range(acc.regions) if region is None else [region]
        idx = [(gid * acc.regions + r) * acc.services + s for r in regions]
        n = int(acc.verdict["n"][idx].sum())
        slo = self.slos.get(self.services[s]) if s < len(self.services) else None
        metrics = []
        if slo is not None:
            for m in METRICS:
                bound = getattr(slo, f"{m}_ns")
                if bound is not None:
                    metrics.append(
                        metric_verdict(
                            name=m,
                            n=n,
                            over=int(acc.verdict[m][idx].sum()),
                            bound_ns=bound,
                            p=slo.percentile / 100.0,
                            rules=self.rules,
                        )
                    )
        last = max(int(acc.verdict["last"][idx].max()), 0)
        return verdict(metrics, duration_ns=last, rules=self.rules, requests=n)

    def _verdict(self, acc: LevelAcc, gid: int, service: str | None) -> dict[str, Any]:
        """A one-service row: that service's verdict over the row (as summary.json's groups
        and services). Other rows: VALID only when each region/service slice is (as its
        regions and fleet)."""
        names = self.keys.labels
        if service is not None:
            s = names["service"].index(service)
            return self._service_verdict(acc, gid, s, None)
        every = {
            f"{names['region'][r]}/{names['service'][s]}": self._service_verdict(acc, gid, s, r)
            for r in range(acc.regions)
            for s in range(acc.services)
        }
        per = {k: v for k, v in every.items() if v["result"] != "NO_REQUESTS"}
        failing = [k for k, v in per.items() if v["result"] == "INVALID"]
        return {
            "result": combined_result([v["result"] for v in every.values()]),
            "reasons": [f"{k}: {r}" for k in failing for r in per[k]["reasons"]],
            "groups": {k: v["result"] for k, v in per.items()},
        }


def _quantile_fields(values: dict[str, float], qs: dict[str, float]) -> dict[str, float | None]:
    """Quantile dict with None for an empty group (as summary.json)."""
    return {k: (values[k] if k in values and math.isfinite(values[k]) else None) for k in qs}
