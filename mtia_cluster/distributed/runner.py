"""The distributed replay: a transport carries a driver's calls to shard workers.

`replay` is a composition: validated inputs (prepare.py), a results directory
(`ResultsWriter`), a transport that starts the shard workers and reaches them (transport.py:
in this process, or Ray actors with recovery, ray_transport.py), and a driver that decides
the calls (drivers.py: per-window coordinator, or per-epoch region shards). The shards write
their own Parquet parts and return summary statistics at close; the driver merges them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.distributed.drivers import (
    Driver,
    EpochDriver,
    Progress,
    WindowDriver,
    shard_logs,
)
from mtia_cluster.distributed.prepare import (
    Prepared,
    ReplayOptions,
    checked,
    plan,
    prepare,
    region_groups,
)
from mtia_cluster.distributed.ray_transport import MAX_RESTARTS, FleetHosts, RayActors
from mtia_cluster.distributed.timing import Timeline
from mtia_cluster.distributed.trace_scan import served_chunks
from mtia_cluster.distributed.transport import InProcess, Shards, ShardSpec, Transport
from mtia_cluster.distributed.worker import CHECKPOINTS_DIR
from mtia_cluster.engine.cell import RequestBatch, rejected_at_arrival
from mtia_cluster.errors import UserError
from mtia_cluster.results import ResultsWriter, VerdictRules
from mtia_cluster.results.links import write_links
from mtia_cluster.results.writer import run_extra

# prepare.py's names that callers import from here
__all__ = [
    "MAX_RESTARTS",
    "Prepared",
    "ReplayOptions",
    "plan",
    "prepare",
    "region_groups",
    "replay",
    "transport_for",
]


def replay(
    scenario_path: str | Path,
    trace_path: str | Path,
    out_dir: str | Path,
    options: ReplayOptions | None = None,
    progress: Progress | None = None,
    prepared: Prepared | None = None,
    transport: Transport | None = None,
) -> Path:
    """Replay `trace_path` on the fleet of `scenario_path`; write the results directory.

    `transport` defaults to the options' (`transport_for`); tests pass a faulty one."""
    opt = options or ReplayOptions()
    opt = replace(opt, timeline=opt.timeline or Timeline())
    tl = opt.timeline or Timeline()
    p = prepared or prepare(scenario_path, trace_path, opt, with_trace=False)
    link = transport or transport_for(opt)
    started, t_dir = time.monotonic(), time.time()
    with _writer(p, opt, out_dir, trace_path) as run:
        tl.mark("results_dir", t_dir)
        specs = _specs(p, run, trace_path)
        p, shards = _start(p, link, specs, run, trace_path, tl)
        try:
            driver = _driver(p, opt, trace_path)
            end_ns = driver.run(shards, progress)
            _close(run, shards, driver, p, opt, end_ns, started)
        except BaseException:
            link.release(shards.refs)  # no writer thread may outlive the run's directory
            raise
    return Path(out_dir)


def transport_for(opt: ReplayOptions) -> Transport:
    """In this process (``address="inprocess"``), a launched fleet's hosts, or new actors."""
    if opt.address == "inprocess":
        return InProcess()
    return FleetHosts(opt.fleet) if opt.fleet else RayActors()


def _writer(
    p: Prepared, opt: ReplayOptions, out_dir: str | Path, trace_path: str | Path
) -> ResultsWriter:
    """The run's results directory (temporary until `finalize`) and its manifest."""
    sc = p.scenario
    manifest = {
        "scenario": sc.name,
        "config": sc.raw,
        "seed": sc.seed,
        "placement": (p.record or {}).get("placement")
        or (opt.placement if opt.shards is None else f"shards={opt.shards}"),
        "fleet": opt.fleet,
        "shards": len(p.cells),
        "mode": EpochDriver.mode if p.regions is not None else WindowDriver.mode,
        **opt.extra_manifest,
    }
    return ResultsWriter(
        out_dir,
        manifest=manifest,
        services=p.sim.services,
        regions=p.sim.regions,
        slos=sc.slo,
        rules=VerdictRules(**sc.verdict),
        interval_ns=sc.metrics_interval_ns,
        trace_path=trace_path,
        overwrite=opt.overwrite,
    )


def _specs(p: Prepared, run: ResultsWriter, trace_path: str | Path) -> list[ShardSpec]:
    """One spec per planned shard: region shards also get the trace and their regions."""
    path = str(Path(trace_path).absolute())
    kind = "shard" if p.regions is None else "region"
    out = []
    for i, cells in enumerate(p.cells):
        args = (p.scenario.raw, p.scenario.file, cells, run.target, f"shard-{i:04d}")
        extra = () if p.regions is None else (path, p.regions[i])
        out.append(ShardSpec(kind, args + extra, np.asarray(cells)))
    return out


def _start(
    p: Prepared,
    link: Transport,
    specs: list[ShardSpec],
    run: ResultsWriter,
    trace_path: str | Path,
    tl: Timeline,
) -> tuple[Prepared, Shards]:
    """Check the trace if not done yet and start the shards. Region shards read the trace
    themselves: a transport that starts them in the background does so while the
    coordinator checks the trace (imports, cells, their slice); bad input stops them."""
    early = not p.checked and link.background_start and p.regions is not None
    refs = _started(link, specs, tl) if early else None
    if not p.checked:
        try:
            p = checked(p, trace_path, tl)
        except UserError:
            link.abort(refs or [])
            raise
    with tl.span("write_rejected"):
        _write_rejected(run, p.rejected)
    return p, Shards(link, refs if refs is not None else _started(link, specs, tl), tl)


def _started(link: Transport, specs: list[ShardSpec], tl: Timeline) -> list[Any]:
    tl.mark("start_shards", time.time())
    return link.start(specs)


def _driver(p: Prepared, opt: ReplayOptions, trace_path: str | Path) -> Driver:
    """Region epochs when every shard owns whole regions, else coordinator windows over the
    served rows (streamed in chunks unless `prepare` had to load them whole)."""
    if p.regions is not None:
        return EpochDriver(p.served_rows, opt.epoch_ns)
    step_ns, size = p.scenario.report_interval_ns, opt.trace_chunk_rows
    chunks: Iterable[tuple[RequestBatch, int | None]] = (
        [(p.trace, None)]
        if p.trace is not None
        else served_chunks(p.sim.plane, trace_path, step_ns, size)
    )
    return WindowDriver(p.sim.plane, chunks, p.served_rows, opt.checkpoint_windows)


def _close(
    run: ResultsWriter,
    shards: Shards,
    driver: Driver,
    p: Prepared,
    opt: ReplayOptions,
    end_ns: int,
    started: float,
) -> None:
    """Close the shards, merge their statistics and publish the run's summary files."""
    tl = shards.timeline
    shard_nodes = shards.each("node")
    events = driver.fleet_events(shards)
    scaled = shard_logs(shards, "autoscale_log") if p.scenario.autoscaling else []
    stats = shards.each("close")
    for spans in shards.each("timings"):
        tl.extend(spans)
    if not opt.keep_checkpoints:  # shard states only matter while the run can fail
        shutil.rmtree(Path(run.tmp) / CHECKPOINTS_DIR, ignore_errors=True)
    with tl.span("links/ (fabric links, from devices/)"):
        write_links(run, p.sim.topology, p.sim.regions)
    with tl.span("finalize (summary, regions/, manifest)"):
        run.finalize(
            wall_time_s=time.monotonic() - started,
            simulated_span_ns=end_ns,
            shard_stats={f"shard-{i:04d}": st for i, st in enumerate(stats)},
            expected_requests=p.served_rows + len(p.rejected),
            extra={
                "nodes": shards.transport.nodes(),
                "shard_nodes": len(set(shard_nodes)),
                "shard_restarts": shards.transport.restarts,
                **run_extra(events, scaled),
            },
        )


def _write_rejected(run: ResultsWriter, rejected: RequestBatch) -> None:
    """Requests whose region has no pool for their service: status rejected, by the driver."""
    with run.shard("coordinator") as writer:
        if len(rejected):
            writer.write_completed(rejected_at_arrival(rejected))
