"""`mtia-cluster simulate CONFIG --trace T`: replay a trace in one process (no Ray)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mtia_cluster import fmt
from mtia_cluster.cli._common import claim_output, json_option, overwrite_option, set_option
from mtia_cluster.cli.progress import progress
from mtia_cluster.cli.summary_view import echo_run_lines, echo_summary, fail_on_invalid_option

if TYPE_CHECKING:
    from mtia_cluster.config.scenario import Scenario


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
    from mtia_cluster.output import RESULTS_DIR

    if output is not None:  # refused before any work
        claim_output(output, RESULTS_DIR, overwrite)
    scenario = load_scenario(config, overrides, seed=seed)
    with progress("simulating", "requests", as_json=as_json) as bar:
        if output is None:
            doc, rows, end_ns, events, wall_s = _in_memory(scenario, shards, trace_path, bar.update)
        else:
            doc, rows, end_ns, events, wall_s = _streamed(
                scenario, shards, trace_path, output, overwrite, bar.update
            )
    if not as_json:
        written = "" if output is None else f"; written to {output}"
        click.echo(
            f"{scenario.name}: {rows:,} requests, {fmt.number(end_ns / 1e9)} s "
            f"simulated in {wall_s:.2f} s wall{written}"
        )
        echo_run_lines(doc, events)
    echo_summary(doc, as_json, fail_on_invalid)


Outcome = tuple[dict[str, Any], int, int, list[dict[str, Any]], float]


def _in_memory(
    scenario: Scenario, shards: int, trace_path: Path, update: Callable[[int, int], None]
) -> Outcome:
    """Without -o: the run in memory, summarized by the one summary path."""
    from mtia_cluster.engine.simulation import Simulation
    from mtia_cluster.engine.trace_input import load_trace
    from mtia_cluster.results import FORMAT_VERSION, run_folded, summarize

    trace = load_trace(trace_path, scenario, streamed=True)  # refused before any work
    sim = Simulation(scenario, shards=shards)
    started = time.perf_counter()
    results = run_folded(sim, trace, progress=update)  # device samples folded: bounded
    wall_s = time.perf_counter() - started
    doc = {"format_version": FORMAT_VERSION, **summarize(results).summary}
    return doc, len(trace), results.end_ns, results.fleet_events, wall_s


def _streamed(
    scenario: Scenario,
    shards: int,
    trace_path: Path,
    output: Path,
    overwrite: bool,
    update: Callable[[int, int], None],
) -> Outcome:
    """With -o: rows and device intervals streamed into the results directory as the run
    goes (results/stream.py); the summary is the one written there, read back."""
    from mtia_cluster.results import open_results
    from mtia_cluster.results.stream import stream_run

    manifest = {
        "command": "simulate",
        "scenario": scenario.name,
        "seed": scenario.seed,
        "config": scenario.raw,
        "placement": "single-process",
        "shards": shards,
        "mode": "in-process",
    }
    run = stream_run(
        scenario,
        shards,
        trace_path,
        output,
        manifest=manifest,
        overwrite=overwrite,
        progress=update,
    )
    doc = open_results(run.path).summary
    return doc, run.rows, run.end.end_ns, run.end.fleet_events, run.wall_s
