"""Reading the trace for a distributed replay without ever holding it whole in one process.

The coordinator only *validates* the trace, streaming it batch by batch (DESIGN §3): every
check of :func:`~mtia_cluster.engine.trace_input.load_trace` (types, nulls, arrival order,
unique ids, counts, known services and regions, items of R&R requests), plus the count of
served requests and the few rows no region serves (written as rejected by the coordinator).
Each region-owning shard then reads its own slice (:func:`region_slice`).

A request without a region (trace region -1) is given one by the scenario's weights from one
seeded stream in trace order (``RoutingPlane.assign_regions``); it is served exactly when some
region with a positive weight serves its service, so the coordinator needs no random draw.
A shard keeps every row without a region, in trace order, so it draws the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mtia_cluster.config.scenario_limits import check_run
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.trace_input import check_items, trace_batches, window_chunks
from mtia_cluster.traces.columns import to_numpy_columns, trace_prefix_tokens
from mtia_cluster.traces.io import read_span_ns, read_trace_batches
from mtia_cluster.traces.limits import column_range


@dataclass
class TraceCheck:
    """What the coordinator learns from one validating pass over the trace."""

    rows: int
    served: int
    rejected: RequestBatch  # rows no region serves, with region as assigned (-1 if none)
    missing_region: bool  # some rows have no region (they need the global draw, in order)


def servable(plane: RoutingPlane) -> np.ndarray:
    """bool[region, service]: the region has cells (a router) for the service."""
    table = np.zeros((len(plane.regions), len(plane.services)), dtype=bool)
    for r, s in plane.routers:
        table[r, s] = True
    if plane.global_router is not None:  # spill: any region serving the service (#16)
        table[:] = table.any(axis=0)
    return table


def _served_without_region(plane: RoutingPlane, table: np.ndarray) -> np.ndarray | None:
    """bool[service]: a request without a region is served; None when that depends on the
    random draw (some region the weights can pick has no cells for the service)."""
    if plane.global_router is not None:  # placed per window (#16)
        return np.asarray(table.any(axis=0))
    out = np.zeros(len(plane.services), dtype=bool)
    for s, name in enumerate(plane.services):
        picks = [
            r
            for r, region in enumerate(plane.scenario.regions)
            if region.weight > 0 and any(p.service == name for p in region.pools)
        ]
        if any(not table[r, s] for r in picks):
            return None
        out[s] = bool(picks)
    return out


def check_trace(path: str | Path, plane: RoutingPlane) -> TraceCheck | None:
    """Validate the trace streaming; None when served rows depend on the region draw (the
    caller then loads the trace whole, as the coordinator-driven path does)."""
    p = Path(path)
    check_run(plane.scenario, read_span_ns(p), streamed=True)  # windows, device intervals
    table = servable(plane)
    no_region = _served_without_region(plane, table)
    if no_region is None:
        return None
    rows, served_rows, rejected, missing = 0, 0, [], False
    tokens = trace_prefix_tokens(p)
    for batch in read_trace_batches(p):
        cols = to_numpy_columns(batch, plane.services, plane.regions, file=p, prefix_tokens=tokens)
        check_items(RequestBatch(**cols), plane.scenario, p, rows)
        region, service = cols["region"], cols["service"]
        missing = missing or bool(np.any(region < 0))
        served = np.where(region >= 0, table[np.maximum(region, 0), service], no_region[service])
        n_served = int(np.count_nonzero(served))
        if n_served < len(served):
            rejected.append(RequestBatch(**cols).take(~served))
        rows += batch.num_rows
        served_rows += n_served
    return TraceCheck(rows, served_rows, RequestBatch.concat(rejected), missing)


def served_chunks(
    plane: RoutingPlane, path: str | Path, step_ns: int, chunk_rows: int
) -> Iterator[tuple[RequestBatch, int | None]]:
    """The served rows in trace order, in chunks of about `chunk_rows` that end at a window
    boundary: (rows, end_ns), every row of the chunk arriving before end_ns (None: the last
    chunk). For the coordinator-driven windows, which route every request: it holds one
    chunk at a time, never the whole trace. Every row must have a region (the caller loads a
    trace with rows without one whole: their regions come from one draw in trace order)."""
    table = servable(plane)

    def served() -> Iterator[RequestBatch]:
        for rows in trace_batches(path, plane.scenario, validate=False):
            keep = table[np.maximum(rows.region, 0), rows.service] & (rows.region >= 0)
            yield rows if keep.all() else rows.take(keep)

    return window_chunks(served(), step_ns, chunk_rows)


def region_slice(
    plane: RoutingPlane,
    path: str | Path,
    regions: list[int],
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> RequestBatch:
    """The served requests of `regions`, in trace order, read batch by batch (only those
    arriving in [start_ns, end_ns) when given: row groups outside are skipped).

    Rows of other regions (and rows their region does not serve) are dropped as each batch is
    read; the kept rows are copied once, into arrays sized for the whole file whose unused
    tail is never touched (so never resident). Rows without a region are kept, then given
    regions by the global stream (all of them are kept, in order, so the draws are those of
    the single-process engine) and filtered like the others. The coordinator validated the
    file, so this read does not check it again.
    """
    mine = np.zeros(len(plane.regions) + 1, dtype=bool)  # index -1: rows without a region
    mine[regions] = True
    mine[-1] = True
    table = servable(plane)
    out: dict[str, np.ndarray] = {}
    n = 0
    tokens = trace_prefix_tokens(path)
    for batch in read_trace_batches(path, validate=False, start_ns=start_ns, end_ns=end_ns):
        cols = to_numpy_columns(
            batch, plane.services, plane.regions, file=path, prefix_tokens=tokens
        )
        region = cols["region"]
        keep = mine[region] & ((region < 0) | table[np.maximum(region, 0), cols["service"]])
        k = int(np.count_nonzero(keep))
        if not out:
            rows = pq_rows(path)
            out = {name: np.empty(rows, dtype=col.dtype) for name, col in cols.items()}
        for name, col in cols.items():
            if k == len(keep):
                out[name][n : n + k] = col
            elif k:
                np.compress(keep, col, out=out[name][n : n + k])
        n += k
    if not out:
        return RequestBatch.empty()
    trace = RequestBatch(**{name: col[:n] for name, col in out.items()})
    if not np.any(trace.region < 0) or plane.global_router is not None:
        return trace  # (spill: the shard owns every region; rows are placed per window)
    trace = plane.assign_regions(trace)
    return trace.take(
        np.isin(trace.region, regions) & table[np.maximum(trace.region, 0), trace.service]
    )


def regions_complete(path: str | Path) -> bool:
    """Every row of the trace names its region (from the footer's null counts; a row group
    without them is read): then a shard can read its slice a time range at a time."""
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    names = [meta.schema.column(j).path for j in range(meta.num_columns)]
    if "region" not in names:
        return False
    j = names.index("region")
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(j).statistics
        if stats is None or not stats.has_null_count:
            nulls = pf.read_row_group(i, columns=["region"]).column(0).null_count
        else:
            nulls = stats.null_count
        if nulls:
            return False
    return True


def last_arrival_ns(path: str | Path) -> int:
    """Latest arrival in the trace (row-group statistics)."""
    found = column_range(pq.ParquetFile(path), "arrival_ns")
    return int(found[1]) if found is not None else -1


def pq_rows(path: str | Path) -> int:
    """Rows of a Parquet file, from its footer."""
    return int(pq.ParquetFile(path).metadata.num_rows)
