"""An in-process run streamed into a results directory: `simulate -o` in bounded memory.

`stream_run` validates the trace in one streaming pass (bad input is refused before any
work), then reads it again in window-aligned chunks (engine/trace_input.py `window_chunks`,
one chunk ahead on a background thread: `Prefetch`) and runs `Simulation.stream`, which
hands finished rows and device counter samples out as they happen. Converting, summarizing
and writing them runs on a second background thread (`BackgroundWriter`, in order, bounded;
results/background.py), so on two cores the engine and the writer run at once; the files
are byte for byte those of doing it in line. Rows are buffered up to `FLUSH_ROWS` and
written through the shard writer
`replay`'s shards use (`ShardWriter`: split by region on the int codes, converted once,
statistics accumulated as written); each device sample becomes one interval of `devices`
rows at once (`DeviceTracker`). Nothing grows with the run's length except the request_id
check (one bit per id): the exact quantiles keep histograms, not values, and are resolved
from one read of the written rows at finalize (results/exact.py). A trace with rows
without a region is read whole (their regions come from one draw in trace order), as the
distributed coordinator does.

Order of the written rows: per region partition, in the order the requests finished (one
part file per shard and checkpoint); readers that need request_id order sort
(``dataset.to_table().sort_by("request_id")``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.config.scenario import Scenario
from mtia_cluster.engine.cell import Completed, DeviceCounters, RequestBatch
from mtia_cluster.engine.simulation import RunEnd, Simulation
from mtia_cluster.engine.trace_input import (
    CHUNK_ROWS,
    check_trace_file,
    load_trace,
    trace_batches,
    window_chunks,
)
from mtia_cluster.results.background import BackgroundWriter, Prefetch
from mtia_cluster.results.convert import DeviceTracker
from mtia_cluster.results.links import write_links
from mtia_cluster.results.run import fleet_tracker, run_writer
from mtia_cluster.results.writer import ResultsWriter, run_extra

FLUSH_ROWS = 131_072  # finished requests buffered before one write (few large writes)


class RowStream:
    """Finished rows buffered and written in large pieces (`write`: a shard writer's
    ``write_completed``). `submit` (e.g. `BackgroundWriter.submit`) runs the joining of the
    buffered pieces and the write elsewhere."""

    def __init__(
        self,
        write: Callable[[Completed], None],
        flush_rows: int = FLUSH_ROWS,
        submit: Callable[..., None] | None = None,
    ) -> None:
        self.write = write
        self.flush_rows = flush_rows
        self.submit = submit
        self.pending: list[Completed] = []
        self.pending_rows = 0

    def add(self, rows: Completed) -> None:
        """Buffer `rows`; write once `flush_rows` are pending."""
        if len(rows):
            self.pending.append(rows)
            self.pending_rows += len(rows)
            if self.pending_rows >= self.flush_rows:
                self.flush()

    def flush(self) -> None:
        """Write whatever is buffered."""
        if self.pending:
            parts, self.pending, self.pending_rows = self.pending, [], 0
            if self.submit is None:
                self._write(parts)
            else:
                self.submit(self._write, parts)

    def _write(self, parts: list[Completed]) -> None:
        self.write(Completed.concat(parts))


class DeviceStream:
    """Cumulative device counters at sample times -> one interval of `devices` rows per
    sample after the first (t = 0), written at once; nothing is kept (the fabric's
    `links/` rows are computed from the written `devices/` rows, results/links.py).

    `submit` (e.g. `BackgroundWriter.submit`) runs the conversion and the write elsewhere;
    the counters are copied first, since the engine may update its arrays in place."""

    def __init__(
        self,
        tracker: DeviceTracker,
        write: Callable[[Any], None],
        submit: Callable[..., None] | None = None,
    ) -> None:
        self.tracker, self.write, self.submit = tracker, write, submit
        self.last_ns: int | None = None

    def sample(self, t_ns: int, counters: DeviceCounters) -> None:
        """Counters at `t_ns` (the first call: the run's start)."""
        if self.last_ns is not None and t_ns > self.last_ns:
            if self.submit is None:
                self._interval(counters, self.last_ns, t_ns)
            else:
                self.submit(self._interval, _copied(counters), self.last_ns, t_ns)
        if self.last_ns is None or t_ns > self.last_ns:
            self.last_ns = t_ns

    def _interval(self, counters: DeviceCounters, start_ns: int, end_ns: int) -> None:
        self.write(self.tracker.interval(counters, start_ns=start_ns, end_ns=end_ns))


def _copied(counters: DeviceCounters) -> DeviceCounters:
    """Counters in fresh arrays (a few ms for 115,200 accelerators)."""
    return DeviceCounters(**{n: a.copy() for n, a in counters.columns().items()})


@dataclass(frozen=True)
class StreamedRun:
    """What `stream_run` tells its caller (the console lines)."""

    path: Path
    rows: int
    end: RunEnd
    wall_s: float


def stream_run(
    scenario: Scenario,
    shards: int,
    trace_path: str | Path,
    out: str | Path,
    *,
    manifest: Mapping[str, Any],
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> StreamedRun:
    """Replay the trace at `trace_path` on the fleet of `scenario` (in `shards` in-process
    shards) and write the results directory `out` (atomically, through `ResultsWriter`)
    without holding the run in memory. The trace is checked before any work; it is read
    `chunk_rows` rows at a time (about: chunks end at window boundaries)."""
    sc = scenario
    rows, missing = check_trace_file(trace_path, sc)
    with _small_pages(), _trace_chunks(trace_path, sc, missing, chunk_rows) as chunks:
        sim = Simulation(sc, shards=shards)
        started = time.perf_counter()
        with run_writer(
            sc,
            out,
            services=sim.services,
            regions=sim.regions,
            manifest=manifest,
            trace_path=trace_path,
            overwrite=overwrite,
        ) as writer:
            end = _write_run(sim, chunks, writer, rows, progress)
            wall_s = time.perf_counter() - started
            path = writer.finalize(
                wall_time_s=wall_s,
                simulated_span_ns=end.end_ns,
                extra=run_extra(end.fleet_events, end.autoscale),
                expected_requests=rows,
            )
    return StreamedRun(path, rows, end, wall_s)


@contextmanager
def _small_pages() -> Iterator[None]:
    """numpy asks the kernel for transparent huge pages (``madvise``) for every array of
    4 MiB or more. A streamed run makes such arrays afresh all the time (each trace chunk
    of ~1 M rows: 4-8 MB per column), and on a machine whose memory is fragmented each
    first touch of a 2 MiB page may wait for the kernel to compact memory: chunking 3 M
    trace rows of the 16 x 100 fleet took 1.4-1.7 s of system time with them and 0.4-0.7
    s without (fresh processes, alternating). So numpy allocates plain pages during the
    run (the previous setting is restored after it; a user's NUMPY_MADVISE_HUGEPAGE is
    left alone). Only where memory comes from changes: results are the same."""
    toggle = getattr(getattr(np, "_core", None), "multiarray", None)
    toggle = getattr(toggle, "_set_madvise_hugepage", None)
    if toggle is None or "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        yield
        return
    previous = toggle(False)
    try:
        yield
    finally:
        toggle(previous)


def _trace_chunks(
    path: str | Path, sc: Scenario, missing: bool, chunk_rows: int
) -> Prefetch[tuple[RequestBatch, int | None]]:
    """The trace in window-aligned chunks, read one chunk ahead on a background thread (a
    trace with rows without a region: whole, in one chunk; see the module doc)."""
    chunks: Iterable[tuple[RequestBatch, int | None]] = (
        [(load_trace(path, sc, streamed=True), None)]
        if missing
        else window_chunks(
            trace_batches(path, sc, validate=False), sc.report_interval_ns, chunk_rows
        )
    )
    return Prefetch(chunks, name="trace-reader")


def _write_run(
    sim: Simulation,
    chunks: Iterable[tuple[RequestBatch, int | None]],
    writer: ResultsWriter,
    rows: int,
    progress: Callable[[int, int], None] | None,
) -> RunEnd:
    """Run the simulation over `chunks`, its rows and device intervals written as they come
    (converted and written on a background thread), then the fabric's `links/` rows."""
    shard = writer.shard(0)
    tracker = fleet_tracker(sim.topology, sim.regions, sim.services)
    with BackgroundWriter() as background:  # converts and writes while the engine runs
        requests = RowStream(shard.write_completed, submit=background.submit)
        devices = DeviceStream(tracker, shard.write_devices, background.submit)
        end = sim.stream(chunks, requests.add, devices.sample, progress=progress, rows=rows)
        requests.flush()
    shard.close()
    write_links(writer, sim.topology, sim.regions)  # fabric links/, from devices/
    return end
