"""A replay's inputs, validated before any shard starts: options, scenario, plan, trace.

`prepare` loads the scenario, builds the fleet (models must fit), plans the shards and checks
the trace. With region-owning shards the coordinator only validates the trace, streaming
(trace_scan.py: it never holds the whole trace); the coordinator-driven path routes every
request itself, so it loads the trace whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import Scenario, load_scenario, parse_scenario
from mtia_cluster.distributed.launched import load_record
from mtia_cluster.distributed.placement import partition
from mtia_cluster.distributed.timing import Timeline
from mtia_cluster.distributed.trace_scan import check_trace
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
from mtia_cluster.errors import UserError

CHECKPOINT_WINDOWS = 2000


@dataclass
class ReplayOptions:
    placement: str = "region"
    shards: int | None = None
    address: str | None = None  # None: embedded local Ray; "inprocess": no Ray at all
    checkpoint_windows: int = CHECKPOINT_WINDOWS
    epoch_ns: int = 30 * 10**9  # simulated time per call for region-owning shards
    overrides: tuple[str, ...] = ()
    seed: int | None = None
    fleet: str | None = None  # replay on a launched fleet (its plan and actors)
    extra_manifest: dict[str, Any] = field(default_factory=dict)
    timeline: Timeline | None = None  # filled with the coordinator's and shards' spans
    trace_chunk_rows: int = 1_000_000  # rows the coordinator-driven windows hold at a time
    overwrite: bool = False  # replace an earlier results directory at -o (mtia_cluster.output)
    keep_checkpoints: bool = False  # keep <out>/_checkpoints/ (shard states) after success


@dataclass
class Prepared:
    """A replay's validated inputs. The CLI prepares everything, trace included, before it
    starts or joins Ray (bad input exits at once, with no output); replay() called without
    them checks the trace while the shard processes start (bad input kills them and leaves
    the run directory marked incomplete)."""

    scenario: Scenario
    sim: Simulation
    regions: list[list[int]] | None
    cells: list[list[int]]
    record: dict[str, Any] | None
    trace: RequestBatch | None  # served rows, when they are not streamed (see _trace_inputs)
    rejected: RequestBatch  # rows no region serves (written by the coordinator)
    served_rows: int
    checked: bool = True  # False: the trace is still to be checked (`checked`)


def refuse_fleet_overrides(fleet: str | None, overrides: tuple[str, ...]) -> None:
    """`--set` cannot change a launched fleet: its cells were built from its config at
    `launch` (refused with one line rather than silently ignored)."""
    if fleet and overrides:
        raise UserError(
            "cannot change a launched fleet; relaunch it with `launch CONFIG --set ...`",
            field="--set",
            value=overrides[0],
        )


def prepare(
    scenario_path: str | Path,
    trace_path: str | Path,
    options: ReplayOptions | None = None,
    with_trace: bool = True,
) -> Prepared:
    """Load and validate scenario, trace and plan (UserError on any bad input).

    `with_trace=False` leaves the trace to `checked` (replay() then checks it while Ray
    starts the shard processes)."""
    opt = options or ReplayOptions()
    tl = opt.timeline or Timeline()
    refuse_fleet_overrides(opt.fleet, opt.overrides)
    record = load_record(opt.fleet, "--fleet") if opt.fleet else None
    with tl.span("prepare.scenario"):
        if record is not None:
            raw = {**record["config"], **({"seed": opt.seed} if opt.seed is not None else {})}
            scenario = parse_scenario(raw, record["file"])
        else:
            scenario = load_scenario(scenario_path, opt.overrides, opt.seed)
    with tl.span("prepare.build_topology"):
        sim = Simulation(scenario, load_catalog())  # builds every cell: models must fit, etc.
    regions, cells = (record["region_groups"], record["cells"]) if record else plan(sim, opt)
    cell_events = [e for e in scenario.events if not e.fabric]  # link_* need no shard action
    if (cell_events or scenario.failures or scenario.autoscaling) and not regions:
        # region shards apply fleet events and autoscaling themselves; coordinator-driven
        # windows do not yet
        key = "events" if cell_events else "failures" if scenario.failures else "autoscaling"
        raise UserError(
            f"{'autoscaling' if key == 'autoscaling' else 'fleet events'} need shards that own "
            "whole regions (placement region, or --shards up to the number of regions); or "
            "use `mtia-cluster simulate`",
            file=scenario.file,
            field=key,
        )
    p = Prepared(scenario, sim, regions, cells, record, None, RequestBatch.empty(), 0, False)
    return checked(p, trace_path, tl) if with_trace else p


def checked(p: Prepared, trace_path: str | Path, tl: Timeline) -> Prepared:
    """`p` with its trace inputs (UserError on bad input)."""
    with tl.span("check_trace"):
        trace, rejected, served = _trace_inputs(trace_path, p.sim, p.regions is not None)
    return replace(p, trace=trace, rejected=rejected, served_rows=served, checked=True)


def _trace_inputs(
    path: str | Path, sim: Simulation, region_shards: bool
) -> tuple[RequestBatch | None, RequestBatch, int]:
    """(served rows, or None when they are streamed; rejected rows; served count).

    The coordinator validates the trace streaming (trace_scan.py). Region-owning shards then
    read their own slices; the coordinator-driven windows stream the served rows in chunks
    (`served_chunks`). Only a trace whose rows without a region feed the coordinator-driven
    windows (their regions come from one draw in trace order), or whose served rows depend on
    that draw, is loaded whole."""
    check = check_trace(path, sim.plane)
    if check is not None and (region_shards or not check.missing_region):
        return None, check.rejected, check.served
    trace = sim.plane.assign_regions(load_trace(path, sim.scenario, streamed=True))
    served = sim.plane.served(trace)
    rows = None if region_shards else trace.take(served)
    return rows, trace.take(~served), int(np.count_nonzero(served))


def plan(sim: Simulation, opt: ReplayOptions) -> tuple[list[list[int]] | None, list[list[int]]]:
    """(regions per shard or None, cells per shard) for the options' placement."""
    regions = region_groups(sim, opt)
    if regions is not None:
        return regions, [[c for r in g for c in _cells_of_region(sim, r)] for g in regions]
    return None, partition(sim.topology, opt.placement, opt.shards)


def region_groups(sim: Simulation, opt: ReplayOptions) -> list[list[int]] | None:
    """Regions per shard when every shard can own whole regions, else None.

    Under global routing (policy spill, #16) requests move between regions at every window,
    so one shard owns every region whatever the placement: spill never crosses shards, and
    the shard's window loop is the engine's (``simulate`` == ``replay``)."""
    n = len(sim.regions)
    if sim.plane.global_router is not None:
        if opt.shards is not None and opt.shards < 1:
            raise UserError("must be >= 1", field="--shards", value=opt.shards)
        return [list(range(n))]
    if opt.shards is None:
        return [[r] for r in range(n)] if opt.placement == "region" else None
    if opt.shards < 1:
        raise UserError("must be >= 1", field="--shards", value=opt.shards)
    if opt.shards > n:
        return None
    return [list(range(i, n, opt.shards)) for i in range(opt.shards)]


def _cells_of_region(sim: Simulation, region: int) -> list[int]:
    return np.flatnonzero(np.asarray(sim.topology.cell_region) == region).tolist()
