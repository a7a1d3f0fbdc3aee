"""One pass over a finished run's Parquet parts: summary, `regions/` rows, counts, id check.

Each region's requests are read once (only the needed columns); the summary, the interval
table and the request_id uniqueness check all use that read. The simulated span, needed for
rates before any request is read, comes from the Parquet row-group statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mtia_cluster.errors import UserError
from mtia_cluster.results.devstats import device_stats, totals_of
from mtia_cluster.results.exact import resolve_exact
from mtia_cluster.results.groupstats import Partial
from mtia_cluster.results.intervals import (
    RegionIntervals,
    intervals_table,
    region_table,
)
from mtia_cluster.results.partials import ShardStats
from mtia_cluster.results.replicas import replica_rows_of
from mtia_cluster.results.schema import REGION_SCHEMA
from mtia_cluster.results.summary import compute_summary, region_kinds, summary_from_partials
from mtia_cluster.results.verdict import VerdictRules
from mtia_cluster.slo import ServiceSLO

_NONE = np.zeros(0, dtype=np.int64)
EMPTY_INTERVALS = RegionIntervals(_NONE, _NONE, _NONE, _NONE)


@dataclass
class Derived:
    """What `finalize()` writes besides the parts themselves."""

    summary: dict[str, Any]
    regions: pa.Table
    counts: dict[str, Any]
    span_ns: int


def span_from_metadata(requests: ds.Dataset) -> int:
    """Latest arrival or finish (ns) over all parts, from row-group statistics only."""
    span = 0
    for fragment in requests.get_fragments():
        md = fragment.metadata
        names = [md.schema.column(i).name for i in range(md.num_columns)]
        cols = [names.index(c) for c in ("arrival_ns", "finish_ns")]
        for rg in range(md.num_row_groups):
            for col in cols:
                stats = md.row_group(rg).column(col).statistics
                if stats is not None and stats.has_min_max:
                    span = max(span, int(stats.max))
    return span


def _check_duplicates(ids: list[np.ndarray]) -> None:
    """Fail when any request_id occurs twice in the run."""
    if not ids:
        return
    all_ids = np.sort(np.concatenate(ids))
    dup = all_ids[1:][all_ids[1:] == all_ids[:-1]]
    if len(dup):
        raise UserError("request written more than once", field="request_id", value=int(dup[0]))


def derive(
    requests: ds.Dataset,
    devices: ds.Dataset | None,
    *,
    services: Sequence[str],
    regions: Sequence[str],
    slos: Mapping[str, ServiceSLO],
    rules: VerdictRules,
    interval_ns: int,
    span_ns: int | None,
    check_unique: bool,
) -> Derived:
    """Summary, regions table and counts of a run (see module doc)."""
    span = int(span_ns) if span_ns is not None else span_from_metadata(requests)
    dev = device_stats(devices, interval_ns)
    energy = dev.energy_bins if dev is not None else {}
    tables: list[pa.Table] = []
    ids: list[np.ndarray] = []

    def on_region(region: str, table: pa.Table) -> None:
        tables.append(region_table(region, table, energy.get(region, {}), interval_ns, span))
        if check_unique:
            ids.append(table["request_id"].to_numpy())

    summary = compute_summary(
        requests,
        dev,
        services=services,
        regions=regions,
        slos=slos,
        duration_ns=span,
        rules=rules,
        on_region=on_region,
    )
    _check_duplicates(ids)
    table = pa.concat_tables(tables).unify_dictionaries() if tables else REGION_SCHEMA.empty_table()
    return Derived(summary, unpooled(table, summary), _counts(summary), span)


def derive_from_stats(
    stats: ShardStats,
    devices: ds.Dataset | None,
    *,
    services: Sequence[str],
    regions: Sequence[str],
    slos: Mapping[str, ServiceSLO],
    rules: VerdictRules,
    interval_ns: int,
    span_ns: int | None,
    requests: ds.Dataset | None = None,
) -> Derived:
    """The same as `derive`, from the shards' merged statistics (the devices' totals too,
    when the shards accumulated them: else `devices` is read). Kept-value statistics (an
    in-process run's) need nothing read back; bounded ones (a shard writer's) get their
    exact quantiles from one collecting read of `requests`, the rows they were
    accumulated from (results/exact.py)."""
    fleet_resolved = None
    if stats.bounded:
        if requests is None:
            raise ValueError("bounded statistics need the written requests for their quantiles")
        fleet_resolved = resolve_exact(
            stats, requests, services=services, slos=slos, interval_ns=interval_ns
        )
    span = int(span_ns) if span_ns is not None else stats.max_ns
    dev = stats.devices if stats.devices is not None else device_stats(devices, interval_ns)
    energy = dev.energy_bins if dev is not None else {}
    by_region: dict[str, dict[str, Partial]] = {}
    for (region, service), p in stats.groups.items():
        by_region.setdefault(region, {})[service] = p
    summary = summary_from_partials(
        lambda region: by_region.get(region, {}),
        totals_of(dev),
        services=services,
        regions=regions,
        slos=slos,
        duration_ns=span,
        rules=rules,
        replicas=replica_rows_of(dev),
        fleet_resolved=fleet_resolved,
    )
    tables = [
        intervals_table(
            region,
            stats.intervals.get(region) or EMPTY_INTERVALS,
            energy.get(region, {}),
            interval_ns,
            span,
        )
        for region in regions
    ]
    table = pa.concat_tables(tables).unify_dictionaries() if tables else REGION_SCHEMA.empty_table()
    return Derived(summary, unpooled(table, summary), _counts(summary), span)


def unpooled(table: pa.Table, summary: dict[str, Any]) -> pa.Table:
    """`regions/` rows with null latency quantiles for regions serving both R&R and LLM
    services (ms- and s-scale latencies are not one distribution; docs/results.md)."""
    mixed = [r for r, kinds in region_kinds(summary).items() if len(kinds) > 1]
    if not mixed or table.num_rows == 0:
        return table
    keep = pc.invert(pc.is_in(table["region"].cast(pa.string()), pa.array(mixed)))
    for name in [n for n in table.column_names if n.startswith("latency_")]:
        col = pc.if_else(keep, table[name], pa.scalar(None, table.schema.field(name).type))
        table = table.set_column(table.column_names.index(name), name, col)
    return table


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The manifest's request counts, from the summary's fleet row."""
    fleet = summary["fleet"]
    counts = {
        "requests": fleet["offered"],
        "by_status": {
            s: fleet[k]
            for s, k in (
                ("ok", "completed"),
                ("dropped", "dropped"),
                ("rejected", "rejected"),
                ("failed", "failed"),
            )
        },
    }
    return counts
