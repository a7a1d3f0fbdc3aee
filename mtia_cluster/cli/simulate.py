"""`mtia-cluster simulate CONFIG --trace T`: replay a trace in one process (no Ray)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mtia_cluster import fmt
from mtia_cluster.cli._common import claim_output, json_option, overwrite_option, set_option
from mtia_cluster.cli.progress import progress
from mtia_cluster.cli.summary_view import echo_run_lines, echo_summary, fail_on_invalid_option

if TYPE_CHECKING:
    from mtia_cluster.config.scenario import Scenario
    from mtia_cluster.engine.output import RunOutput


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
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split cells into N in-process shards (results do not change).",
)
@overwrite_option
@set_option
@json_option
@fail_on_invalid_option
def simulate(
    config: Path,
    trace_path: Path,
    output: Path | None,
    seed: int | None,
    shards: int,
    overwrite: bool,
    overrides: tuple[str, ...],
    as_json: bool,
    fail_on_invalid: bool,
) -> None:
    """Replay TRACE on the fleet of CONFIG and print a per-region/service summary.

    The table (or --json document) is the run's summary.json, computed by the same
    function `replay` uses; with -o the results directory holds exactly that summary."""
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
    doc = _summary(results, scenario, output, trace_path, shards, wall_s, overwrite)
    if not as_json:
        click.echo(
            f"{scenario.name}: {len(trace):,} requests, {fmt.number(results.end_ns / 1e9)} s "
            f"simulated in {wall_s:.2f} s wall"
        )
        echo_run_lines(doc, results.fleet_events)
    echo_summary(doc, as_json, fail_on_invalid)


def _summary(
    results: RunOutput,
    scenario: Scenario,
    output: Path | None,
    trace_path: Path,
    shards: int,
    wall_s: float,
    overwrite: bool,
) -> dict[str, Any]:
    """The run's summary document: written with the results directory under -o (and read
    back from it), else computed in memory by the same function."""
    from mtia_cluster.results import FORMAT_VERSION, open_results, summarize, write_run

    if output is None:
        return {"format_version": FORMAT_VERSION, **summarize(results).summary}
    manifest = {
        "command": "simulate",
        "scenario": scenario.name,
        "seed": scenario.seed,
        "config": scenario.raw,
        "placement": "single-process",
        "shards": shards,
        "mode": "in-process",
    }
    path = write_run(
        results,
        output,
        manifest=manifest,
        trace_path=trace_path,
        wall_time_s=wall_s,
        overwrite=overwrite,
    )
    return open_results(path).summary
