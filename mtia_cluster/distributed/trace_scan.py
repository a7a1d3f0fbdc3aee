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
import pyarrow as pa
import pyarrow.parquet as pq

from mtia_cluster.config.scenario_limits import check_run
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.trace_input import check_items, read_end_ns, trace_batches, window_chunks
from mtia_cluster.traces.columns import to_numpy_columns, trace_prefix_tokens
from mtia_cluster.traces.io import DEFAULT_BATCH_ROWS, read_span_ns, read_trace_batches
from mtia_cluster.traces.limits import column_range
from mtia_cluster.traces.schema import conform_batch

# the trace columns the engine reads (traces/columns.py to_numpy_columns)
ENGINE_COLUMNS = (
    "request_id",
    "arrival_ns",
    "service",
    "region",
    "items",
    "input_tokens",
    "output_tokens",
    "session_id",
    "prefix_blocks",
)


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
    # windows, and device intervals from t = 0 to the last arrival (however late the first)
    check_run(plane.scenario, read_span_ns(p), streamed=True, end_ns=read_end_ns(p))
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
    """The served requests of `regions` arriving in [start_ns, end_ns) (default: all), in
    trace order (one `RangeReader` read)."""
    return RangeReader(plane, path, regions).read(start_ns, end_ns)


class RangeReader:
    """The served requests of a region shard's regions, read time range after time range.

    Rows of other regions (and rows their region does not serve) are dropped as each batch is
    read; the kept rows are copied once, into arrays sized for the row groups of the range
    (from the arrival statistics) whose unused tail is never touched. The file is read
    plainly (`_batches_from`): the coordinator validated it. A range that starts where the
    previous one ended continues the same stream (the batch that crossed the previous end is
    held), so every row is decoded once per run whatever the row-group size; any other start
    (the first read, or one after a restart) opens the file at the row group holding it. A
    trace without prefix chains gets its all-None object column once per read instead of
    copying Python objects row by row. Rows without a region are kept, then given regions by
    the global stream (all of them are kept, in order, so the draws are those of the
    single-process engine) and filtered like the others: such a trace is read whole, in one
    range (distributed/region_worker.py TraceSlice).
    """

    def __init__(self, plane: RoutingPlane, path: str | Path, regions: list[int]) -> None:
        self.plane, self.path, self.regions = plane, path, list(regions)
        self.mine = np.zeros(len(plane.regions) + 1, dtype=bool)  # index -1: without region
        self.mine[regions] = True
        self.mine[-1] = True
        self.table = servable(plane)
        self.meta = pq.ParquetFile(path).metadata
        # the chains' block size only when there are chains (it opens the file with its checks)
        self.chained = "prefix_blocks" in pq.read_schema(path).names
        self.tokens = trace_prefix_tokens(path) if self.chained else None
        self._stream: Iterator[pa.RecordBatch] | None = None
        self._at_ns: int | None = None  # rows arriving before it were read from the stream
        self._held: pa.RecordBatch | None = None  # the stream's next rows (at or after _at_ns)

    def __getstate__(self) -> dict[str, object]:
        """Picklable: an open stream is dropped (the next read opens the file again)."""
        return {**self.__dict__, "_stream": None, "_at_ns": None, "_held": None}

    def read(self, start_ns: int | None = None, end_ns: int | None = None) -> RequestBatch:
        """The kept rows arriving in [start_ns, end_ns) (None: unbounded)."""
        lo = start_ns if start_ns is not None else -(2**63)
        hi = end_ns if end_ns is not None else 2**63 - 1
        if self._stream is None or lo != self._at_ns:
            self._stream, self._held = _batches_from(self.path, self.meta, lo), None
        capacity = sum(self.meta.row_group(i).num_rows for i in _groups_between(self.meta, lo, hi))
        out = _SliceBuffer(self.chained, capacity)
        while True:
            batch = self._held if self._held is not None else next(self._stream, None)
            if batch is None:
                break
            cut = int(np.searchsorted(batch.column("arrival_ns").to_numpy(), hi, side="left"))
            self._held = batch.slice(cut) if cut < batch.num_rows else None
            if cut:
                self._add(out, batch.slice(0, cut))
            if self._held is not None:
                break
        self._at_ns = hi
        return self._finish(out.result())

    def _add(self, out: _SliceBuffer, batch: pa.RecordBatch) -> None:
        plane = self.plane
        cols = to_numpy_columns(
            batch, plane.services, plane.regions, file=self.path, prefix_tokens=self.tokens
        )
        region = cols["region"]
        table = self.table
        out.add(
            cols, self.mine[region] & ((region < 0) | table[np.maximum(region, 0), cols["service"]])
        )

    def _finish(self, trace: RequestBatch) -> RequestBatch:
        plane, table = self.plane, self.table
        if not np.any(trace.region < 0) or plane.global_router is not None:
            return trace  # (spill: the shard owns every region; rows are placed per window)
        trace = plane.assign_regions(trace)
        return trace.take(
            np.isin(trace.region, self.regions) & table[np.maximum(trace.region, 0), trace.service]
        )


class _SliceBuffer:
    """Kept rows copied once into arrays of `capacity` rows (allocated at the first batch;
    only the part written is ever touched). `chains`: the trace has prefix chains, so the
    object column is copied too; without, it is all None and made once in `result`."""

    def __init__(self, chains: bool, capacity: int) -> None:
        self.chains, self.capacity = chains, capacity
        self.out: dict[str, np.ndarray] = {}
        self.n = 0

    def add(self, cols: dict[str, np.ndarray], keep: np.ndarray) -> None:
        if not self.chains:
            cols = {name: col for name, col in cols.items() if name != "prefix_blocks"}
        if not self.out:
            self.out = {name: np.empty(self.capacity, dtype=c.dtype) for name, c in cols.items()}
        # the kept positions found once for every column (np.compress finds them per column)
        rows = None if keep.all() else np.flatnonzero(keep)
        k, n = len(keep) if rows is None else len(rows), self.n
        for name, col in cols.items():
            if rows is None:
                self.out[name][n : n + k] = col
            elif k:
                np.take(col, rows, out=self.out[name][n : n + k])
        self.n += k

    def result(self) -> RequestBatch:
        if not self.out:
            return RequestBatch.empty()
        cols = {name: col[: self.n] for name, col in self.out.items()}
        if not self.chains:
            cols["prefix_blocks"] = np.empty(self.n, dtype=object)  # all None
        return RequestBatch(**cols)


def _groups_between(meta: pq.FileMetaData, start_ns: int | None, end_ns: int | None) -> list[int]:
    """Row groups that may hold arrivals in [start_ns, end_ns) (from the arrival statistics;
    a row group without them is kept)."""
    names = [meta.schema.column(j).path for j in range(meta.num_columns)]
    j = names.index("arrival_ns")
    lo_ns = start_ns if start_ns is not None else -(2**63)
    hi_ns = end_ns if end_ns is not None else 2**63 - 1
    out = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(j).statistics
        if stats is None or not stats.has_min_max or (stats.max >= lo_ns and stats.min < hi_ns):
            out.append(i)
    return out


def _batches_from(
    path: str | Path, meta: pq.FileMetaData, start_ns: int
) -> Iterator[pa.RecordBatch]:
    """The engine's columns of the rows arriving at or after `start_ns`, conformed, batch
    by batch: from the row group holding `start_ns` (statistics), its earlier rows cut by
    binary search on the arrivals (non-decreasing: the coordinator checked). Neither the
    open-time limit checks (which read every row group's chunk of a column without
    statistics: once per epoch, before) nor a filter expression."""
    pf = pq.ParquetFile(path, metadata=meta)
    groups = _groups_between(meta, start_ns, None)
    columns = [c for c in pf.schema_arrow.names if c in ENGINE_COLUMNS]
    rows, started = 0, False
    for batch in pf.iter_batches(DEFAULT_BATCH_ROWS, row_groups=groups, columns=columns):
        batch = conform_batch(batch, path, rows)
        rows += batch.num_rows
        if not started:
            first = int(np.searchsorted(batch.column("arrival_ns").to_numpy(), start_ns))
            if first == batch.num_rows:
                continue
            batch, started = batch.slice(first), True
        yield batch


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
