"""Read a trace file into one RequestBatch in the simulation's index conventions.

Services and regions become indices into the scenario's name lists; a service or region the
scenario does not know, or an R&R request without items, is a UserError naming the trace
file, the column and the value, raised before any simulation starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtia_cluster.config.scenario import Scenario
from mtia_cluster.config.scenario_limits import check_run
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.errors import UserError
from mtia_cluster.traces.columns import to_numpy_columns, trace_prefix_tokens
from mtia_cluster.traces.io import read_span_ns, read_trace_batches


def load_trace(path: str | Path, scenario: Scenario) -> RequestBatch:
    """The whole trace at `path`, validated against `scenario` (sizes first)."""
    check_run(scenario, read_span_ns(path))
    services = scenario.services
    regions = [r.name for r in scenario.regions]
    tokens = trace_prefix_tokens(path)
    parts = [
        RequestBatch(**to_numpy_columns(batch, services, regions, file=path, prefix_tokens=tokens))
        for batch in read_trace_batches(path)
    ]
    trace = RequestBatch.concat(parts)
    check_items(trace, scenario, path)
    return trace


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
