"""Read a trace file into one RequestBatch in the simulation's index conventions.

Services and regions become indices into the scenario's name lists; a service or region the
scenario does not know, or an R&R request without items, is a UserError naming the trace
file, the column and the value, raised before any simulation starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mtia_cluster.config.scenario import Scenario
from mtia_cluster.config.scenario_limits import check_run
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.errors import UserError
from mtia_cluster.traces.columns import to_numpy_columns, trace_prefix_tokens
from mtia_cluster.traces.io import read_span_ns, read_trace_batches
from mtia_cluster.traces.limits import column_range

CHUNK_ROWS = 1_000_000  # trace rows a streamed run holds at a time (about 60 MB)


def load_trace(path: str | Path, scenario: Scenario, *, streamed: bool = False) -> RequestBatch:
    """The whole trace at `path`, validated against `scenario` (sizes first; `streamed`:
    the run writes or folds its device intervals as it goes instead of keeping them,
    `check_run`)."""
    check_run(scenario, read_span_ns(path), streamed=streamed, end_ns=read_end_ns(path))
    trace = RequestBatch.concat(list(trace_batches(path, scenario)))
    check_items(trace, scenario, path)
    return trace


def read_end_ns(path: str | Path) -> int:
    """The (opened and checked) trace's last arrival, from its statistics (0 without rows):
    device samples run from t = 0 to it, however late the first arrival."""
    rng = column_range(pq.ParquetFile(path), "arrival_ns")
    return int(rng[1]) if rng is not None else 0


def trace_batches(
    path: str | Path, scenario: Scenario, validate: bool = True
) -> Iterator[RequestBatch]:
    """The trace's rows batch by batch, in the scenario's index conventions (`validate`:
    the file's own checks - types, nulls, order, unique ids - as they are read)."""
    services = scenario.services
    regions = [r.name for r in scenario.regions]
    tokens = trace_prefix_tokens(path)
    for batch in read_trace_batches(path, validate=validate):
        yield RequestBatch(
            **to_numpy_columns(batch, services, regions, file=path, prefix_tokens=tokens)
        )


def check_trace_file(path: str | Path, scenario: Scenario) -> tuple[int, bool]:
    """Every check of `load_trace` in one streaming pass that keeps no row (a streamed run
    refuses bad input before any work): (rows, whether some row has no region). The run
    streams its device intervals to disk (the streamed limit, docs/limits.md)."""
    check_run(scenario, read_span_ns(path), streamed=True, end_ns=read_end_ns(path))
    rows, missing = 0, False
    for batch in trace_batches(path, scenario):
        check_items(batch, scenario, path, rows)
        missing = missing or bool(np.any(batch.region < 0))
        rows += len(batch)
    return rows, missing


def window_chunks(
    batches: Iterable[RequestBatch], step_ns: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[RequestBatch, int | None]]:
    """Rows sorted by arrival regrouped into chunks of about `chunk_rows` that end at a
    window boundary: (rows, end_ns), every row arriving before end_ns (None: the last
    chunk). A window loop runs each chunk up to its end and continues on the next from
    the same state, which equals one pass over all rows (cells are exact for any cut)."""
    pending: list[RequestBatch] = []
    pending_rows = 0
    for rows in batches:
        pending.append(rows)
        pending_rows += len(rows)
        if pending_rows < chunk_rows:
            continue
        chunk = RequestBatch.concat(pending)
        end_ns = int(chunk.arrival_ns[-1]) // step_ns * step_ns  # the last row's window
        cut = int(np.searchsorted(chunk.arrival_ns, end_ns, side="left"))
        if cut == 0:  # every row in one window so far: keep reading
            pending = [chunk]
            continue
        yield chunk.take(slice(0, cut)), end_ns
        pending = [chunk.take(slice(cut, None))]
        pending_rows = len(pending[0])
    yield RequestBatch.concat(pending), None


def check_items(
    trace: RequestBatch, scenario: Scenario, file: str | Path | None, row0: int = 0
) -> None:
    """R&R requests need items >= 1 (an R&R service is one served by an R&R pool); `row0`
    numbers rows from the file's start when `trace` is one batch of a streamed file."""
    rr = {p.service for r in scenario.regions for p in r.pools if p.kind == "rr"}
    for s, name in enumerate(scenario.services):
        if name not in rr:
            continue
        bad = (trace.service == s) & (trace.items < 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"R&R service {name!r} needs items >= 1 (row {row0 + row})",
                file=file,
                field="items",
                value=int(trace.items[row]),
            )
