"""`mtia-cluster simulate CONFIG --trace T`: replay a trace in one process (no Ray)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from mtia_cluster.cli._common import (
    claim_output,
    echo_json,
    echo_table,
    json_option,
    overwrite_option,
    set_option,
)
from mtia_cluster.cli.progress import progress

COLUMNS = [
    ("region", "region"),
    ("service", "service"),
    ("requests", "requests"),
    ("throughput_per_s", "req/s"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("utilization", "util"),
    ("energy_j", "energy J"),
    ("slo", "SLO"),
]


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trace",
    "trace_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trace (Parquet).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the results directory (DESIGN §4) here, atomically.",
)
@overwrite_option
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split cells into N in-process shards (results do not change).",
)
@set_option
@json_option
def simulate(
    config: Path,
    trace_path: Path,
    output: Path | None,
    overwrite: bool,
    seed: int | None,
    shards: int,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Replay TRACE on the fleet of CONFIG and print a per-region/service summary."""
    from mtia_cluster.config.scenario import load_scenario
    from mtia_cluster.engine.simulation import Simulation
    from mtia_cluster.engine.trace_input import load_trace
    from mtia_cluster.output import RESULTS_DIR

    if output is not None:  # refused before any work
        claim_output(output, RESULTS_DIR, overwrite)
    scenario = load_scenario(config, overrides, seed=seed)
    trace = load_trace(trace_path, scenario)
    sim = Simulation(scenario, shards=shards)
    started = time.perf_counter()
    with progress("simulating", "requests", as_json=as_json) as bar:
        results = sim.run(trace, progress=bar.update)
    wall_s = time.perf_counter() - started
    rows = results.summary()
    info = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "requests": len(trace),
        "simulated_s": results.end_ns / 1e9,
        "wall_s": wall_s,
        "requests_per_wall_s": len(trace) / wall_s if wall_s > 0 else None,
    }
    if results.fleet_events:
        info["fleet_events"] = results.fleet_events  # also lands in the manifest
    if output is not None:
        _write(output, results, info, trace_path, overwrite)
    if as_json:
        echo_json({**info, "summary": rows})
        return
    click.echo(
        f"{scenario.name}: {len(trace):,} requests, {results.end_ns / 1e9:.3f} s "
        f"simulated in {wall_s:.2f} s wall"
    )
    for ev in results.fleet_events:
        click.echo(
            f"event at {ev['at_ns'] / 1e9:.3f} s: {ev['kind']} {ev['cells']} cells in "
            f"{ev['region']}, {ev['requests_retried']} requests retried, "
            f"{ev['requests_failed']} failed"
        )
    echo_table([h for _, h in COLUMNS], [[r.get(k, "") for k, _ in COLUMNS] for r in rows])


def _write(
    output: Path, results: Any, info: dict[str, Any], trace_path: Path, overwrite: bool
) -> None:
    """The DESIGN §4 results directory (manifest, requests/, devices/, regions/, summary),
    written by mtia_cluster.results into a temporary directory renamed on success."""
    import numpy as np

    from mtia_cluster.engine.cell import DeviceCounters
    from mtia_cluster.results.convert import DeviceTracker, fleet_device_info
    from mtia_cluster.results.slo import slos_from_scenario
    from mtia_cluster.results.writer import ResultsWriter

    sc, fleet, dev = results.scenario, results.fleet, results.devices
    device_info, chips = fleet_device_info(fleet, np.arange(fleet.accelerators))
    manifest = {
        "command": "simulate",
        "scenario": sc.name,
        "seed": sc.seed,
        "config": sc.raw,
        "placement": "single-process",
        **info,
    }
    with ResultsWriter(
        output,
        manifest=manifest,
        services=results.services,
        regions=results.regions,
        slos=slos_from_scenario(sc.slo),
        interval_ns=sc.metrics_interval_ns,
        trace_path=trace_path,
        overwrite=overwrite,
    ) as run:
        shard = run.shard(0)
        shard.write_completed(results.requests)
        tracker = DeviceTracker(
            device_info, regions=results.regions, chips=chips, services=results.services
        )
        n = fleet.accelerators
        cols = ("busy_ns", "batches", "work_units")
        cum = {k: np.cumsum(getattr(dev, k).reshape(-1, n), axis=0) for k in cols}
        starts = dev.interval_start_ns.reshape(-1, n)[:, 0]
        ends = dev.interval_end_ns.reshape(-1, n)[:, 0]
        for i, (t0, t1) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            counters = DeviceCounters(
                accelerator_id=device_info.accelerator_id,
                busy_ns=cum["busy_ns"][i],
                batches=cum["batches"][i],
                work_units=cum["work_units"][i],
                peak_memory_bytes=np.zeros(n, dtype=np.int64),
            )
            shard.write_devices(tracker.interval(counters, start_ns=t0, end_ns=t1))
        shard.close()
        run.finalize(wall_time_s=info["wall_s"], simulated_span_ns=results.end_ns)
