"""Results of a run: per-request rows, per-accelerator and per-region interval metrics,
and the per-(region, service) summary.

Energy per accelerator and interval is ``chip.power_w(utilization) x interval`` (idle plus
dynamic power proportional to busy time, the cost model's power law).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.engine.cell import STATUS_OK, Completed, DeviceCounters

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}


@dataclass
class DeviceIntervals:
    """One row per accelerator per metrics interval."""

    interval_start_ns: np.ndarray
    interval_end_ns: np.ndarray
    accelerator_id: np.ndarray
    region: np.ndarray
    busy_ns: np.ndarray
    batches: np.ndarray
    work_units: np.ndarray
    utilization: np.ndarray
    energy_j: np.ndarray
    avg_power_w: np.ndarray


def device_intervals(
    samples: list[tuple[int, DeviceCounters]], fleet: Any, catalog: Any
) -> DeviceIntervals:
    """Differences of cumulative counters between consecutive samples."""
    chips = np.array(fleet.acc_chip)
    region = np.asarray(fleet.acc_region, dtype=np.int32)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in DeviceIntervals.__dataclass_fields__}
    for (t0, a), (t1, b) in itertools.pairwise(samples):
        span = t1 - t0
        busy = b.busy_ns - a.busy_ns
        util = busy / span
        power = np.zeros(len(util))
        for name in np.unique(chips).tolist():
            sel = chips[b.accelerator_id] == name
            power[sel] = catalog.chip(name).power_w(util[sel])
        n = len(busy)
        cols["interval_start_ns"].append(np.full(n, t0, dtype=np.int64))
        cols["interval_end_ns"].append(np.full(n, t1, dtype=np.int64))
        cols["accelerator_id"].append(b.accelerator_id)
        cols["region"].append(region[b.accelerator_id])
        cols["busy_ns"].append(busy)
        cols["batches"].append(b.batches - a.batches)
        cols["work_units"].append(b.work_units - a.work_units)
        cols["utilization"].append(util)
        cols["energy_j"].append(power * span / 1e9)
        cols["avg_power_w"].append(power)
    return DeviceIntervals(**{k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()})


@dataclass
class Results:
    """Everything a run produced (in memory)."""

    scenario: Any
    services: list[str]
    regions: list[str]
    requests: Completed
    devices: DeviceIntervals
    fleet: Any
    end_ns: int
    fleet_events: list[dict[str, Any]] = field(default_factory=list)  # applied, in order

    def region_intervals(self) -> list[dict[str, Any]]:
        """Per region per metrics interval: offered and completed rates, p99, power."""
        rows = []
        req = self.requests
        edges = np.unique(
            np.concatenate([self.devices.interval_start_ns, self.devices.interval_end_ns])
        )
        for r, name in enumerate(self.regions):
            mine = req.region == r
            for t0, t1 in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
                span_s = (t1 - t0) / 1e9
                arrived = mine & (req.arrival_ns >= t0) & (req.arrival_ns < t1)
                done = mine & (req.finish_ns >= t0) & (req.finish_ns < t1)
                lat = (req.finish_ns - req.arrival_ns)[done & (req.status == STATUS_OK)]
                dev = (self.devices.region == r) & (self.devices.interval_start_ns == t0)
                rows.append(
                    {
                        "region": name,
                        "interval_start_ns": t0,
                        "interval_end_ns": t1,
                        "offered_per_s": int(arrived.sum()) / span_s,
                        "completed_per_s": int(done.sum()) / span_s,
                        "latency_p99_ms": _q(lat, 0.99) / 1e6,
                        "power_w": float(self.devices.avg_power_w[dev].sum()),
                    }
                )
        return rows

    def summary(self) -> list[dict[str, Any]]:
        """Per region and service: throughput, latency quantiles, utilization, energy, SLO."""
        rows = []
        req = self.requests
        span_s = max(self.end_ns, 1) / 1e9
        for r, region in enumerate(self.regions):
            for s, service in enumerate(self.services):
                mine = (req.region == r) & (req.service == s)
                if not mine.any() and not self._has_pool(r, service):
                    continue
                rows.append(self._summary_row(r, region, s, service, mine, span_s))
        return rows

    def _has_pool(self, r: int, service: str) -> bool:
        return any(p.service == service for p in self.scenario.regions[r].pools)

    def _summary_row(
        self, r: int, region: str, s: int, service: str, mine: np.ndarray, span_s: float
    ) -> dict[str, Any]:
        req = self.requests
        ok = mine & (req.status == STATUS_OK)
        lat = (req.finish_ns - req.arrival_ns)[ok]
        ttft = (req.first_token_ns - req.arrival_ns)[ok]
        out_tok = req.output_tokens[ok].astype(np.int64)
        decode = (req.finish_ns - req.first_token_ns)[ok]
        tpot = decode[out_tok > 1] / (out_tok[out_tok > 1] - 1)
        pools = [
            p
            for p, pr in enumerate(self.fleet.pool_region)
            if pr == r and self.fleet.pools[p].service == service
        ]
        acc = np.isin(np.asarray(self.fleet.acc_pool), pools)
        dev = acc[self.devices.accelerator_id]
        busy = float(self.devices.busy_ns[dev].sum())
        energy = float(self.devices.energy_j[dev].sum())
        n_acc = int(acc.sum())
        row: dict[str, Any] = {
            "region": region,
            "service": service,
            "requests": int(mine.sum()),
            "completed": int(ok.sum()),
            "accelerators": n_acc,
            "throughput_per_s": int(ok.sum()) / span_s,
        }
        for name, q in QUANTILES.items():
            row[f"latency_{name}_ms"] = _q(lat, q) / 1e6
        if int(req.output_tokens[mine].sum()) > 0:
            for name in ("p50", "p99"):
                row[f"ttft_{name}_ms"] = _q(ttft, QUANTILES[name]) / 1e6
                row[f"tpot_{name}_ms"] = _q(tpot, QUANTILES[name]) / 1e6
        row["utilization"] = busy / (n_acc * self.end_ns) if n_acc and self.end_ns else 0.0
        row["energy_j"] = energy
        row["slo"] = self._verdict(service, row)
        return row

    def _verdict(self, service: str, row: dict[str, Any]) -> str:
        targets = self.scenario.slo.get(service)
        if not targets:
            return "-"
        names = {
            "p99_ms": "latency_p99_ms",
            "ttft_p99_ms": "ttft_p99_ms",
            "tpot_p99_ms": "tpot_p99_ms",
        }
        for key, limit in targets.items():
            value = row.get(names[key], float("nan"))
            if not value <= limit:
                return "INVALID"
        return "VALID"


def _q(values: np.ndarray, q: float) -> float:
    """Quantile (linear interpolation) or NaN for no values."""
    if len(values) == 0:
        return float("nan")
    return float(np.quantile(values, q))
