"""LLM serving statistics per replica and per service, from the `devices/` dataset (#15).

An LLM replica's counters ride on its lead (first) accelerator's `devices` rows (KV cache
size, held-token integral, peak, preemptions, prefix-cache lookups and reuse, KV transfers
sent; engine/llm/kvstats.py). Every summary path (`summary.json` through
`results.summarize`, and `analyze`) turns them into figures here, so they agree:

* ``kv_utilization_mean``: time-weighted mean of KV tokens held / KV capacity over the
  replica's observed time (its lead's device intervals); for a group of replicas the
  capacity-weighted mean (sum of token-seconds / sum of capacity-seconds);
* ``kv_utilization_peak``: most tokens held at once / capacity (a group: its highest replica);
* ``prefix_lookup_hit_rate``: tokens reused / tokens looked up in the prefix cache, over all
  admissions (re-admissions after a preemption look up again), as vLLM counts it;
* ``preemptions``, ``kv_transfers``, ``kv_transfer_bytes``: counts over the run (transfers on
  the prefill instance that sent them).

Sums are per-accelerator totals (results/devstats.py: intervals added in time order), so
the figures are the same bits on every path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow.dataset as ds

from mtia_cluster.results.devstats import DeviceStats, device_stats
from mtia_cluster.units import NS_PER_S

SUMS = (
    "preemptions",
    "prefix_queried_tokens",
    "prefix_cached_tokens",
    "kv_transfers",
    "kv_transfer_bytes",
)


def replica_rows(devices: ds.Dataset | None) -> list[dict[str, Any]]:
    """One row per LLM replica (lead accelerator with a KV cache), by accelerator id; empty
    without devices or for runs written before these columns existed."""
    return replica_rows_of(device_stats(devices, 1))


def replica_rows_of(stats: DeviceStats | None) -> list[dict[str, Any]]:
    """`replica_rows` from per-accelerator totals (results/devstats.py)."""
    if stats is None or "kv_capacity_tokens" not in stats.present:
        return []
    c = stats.columns
    rows = []
    for i in np.flatnonzero(c["kv_capacity_tokens"] > 0).tolist():
        capacity = int(c["kv_capacity_tokens"][i])
        row: dict[str, Any] = {
            "region": stats.regions[int(c["region"][i])],
            "service": stats.services[int(c["service"][i])],
            "accelerator_id": int(c["accelerator_id"][i]),
            "host_id": int(c["host_id"][i]),
            "kv_capacity_tokens": capacity,
            "kv_token_s": float(c["kv_token_s"][i]),
            "kv_capacity_token_s": float(capacity * (stats.device_ns[i] / NS_PER_S)),
            "kv_peak_tokens": int(c["kv_peak_tokens"][i]),
            **{name: int(c[name][i]) for name in SUMS},
        }
        rows.append(with_rates(row))
    return rows


def with_rates(row: dict[str, Any]) -> dict[str, Any]:
    """Add the utilization and hit-rate figures of a replica row or a group total."""
    held, room = row["kv_token_s"], row["kv_capacity_token_s"]
    row["kv_utilization_mean"] = held / room if room > 0 else None
    row["kv_utilization_peak"] = (
        row["kv_peak_tokens"] / row["kv_capacity_tokens"] if row["kv_capacity_tokens"] else None
    )
    queried = row["prefix_queried_tokens"]
    row["prefix_lookup_hit_rate"] = row["prefix_cached_tokens"] / queried if queried else None
    return row


def group_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Totals over replica rows: replicas, their KV capacity, capacity-weighted mean
    utilization, the highest replica's peak utilization, summed counters, pooled hit rate."""
    rows = list(rows)
    held = float(sum(r["kv_token_s"] for r in rows))
    room = float(sum(r["kv_capacity_token_s"] for r in rows))
    queried = sum(r["prefix_queried_tokens"] for r in rows)
    peaks = [r["kv_utilization_peak"] for r in rows if r["kv_utilization_peak"] is not None]
    return {
        "replicas": len(rows),
        "kv_capacity_tokens": int(sum(r["kv_capacity_tokens"] for r in rows)),
        "kv_token_s": held,
        "kv_capacity_token_s": room,
        "kv_utilization_mean": held / room if room > 0 else None,
        "kv_utilization_peak": max(peaks) if peaks else None,
        **{name: int(sum(r[name] for r in rows)) for name in SUMS},
        "prefix_lookup_hit_rate": (
            sum(r["prefix_cached_tokens"] for r in rows) / queried if queried else None
        ),
    }
