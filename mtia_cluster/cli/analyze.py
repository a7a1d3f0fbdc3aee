"""`mtia-cluster analyze DIR`: tables, run comparison and plots from a results directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mtia_cluster.cli._common import (
    claim_output,
    echo_json,
    echo_table,
    json_option,
    overwrite_option,
)
from mtia_cluster.cost.view import analysis_cost_table
from mtia_cluster.results import open_results
from mtia_cluster.results.analysis import analyze as run_analysis
from mtia_cluster.results.analysis import parse_by, parse_window
from mtia_cluster.results.analysis.compare import compare as compare_docs
from mtia_cluster.results.analysis.report import (
    analysis_table,
    comparison_table,
    llm_serving_table,
    network_lines,
    spill_lines,
    verdict_reasons,
)


@click.command()
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@json_option
@click.option(
    "--by",
    default="region,service",
    show_default=True,
    help="Group by region, service, generation, rack (comma-separated).",
)
@click.option("--window", default=None, help="Time series with this window, e.g. 1m, 30s.")
@click.option(
    "--compare",
    "compare_dir",
    metavar="DIR2",
    type=click.Path(path_type=Path),
    help="Compare with another run: deltas and which run meets the SLO where.",
)
@click.option(
    "--plot",
    "plot_file",
    metavar="FILE",
    type=click.Path(path_type=Path),
    help="Write plots: FILE.html (self-contained) or FILE.png (needs matplotlib).",
)
@overwrite_option
def analyze(
    run_dir: Path,
    as_json: bool,
    by: str,
    window: str | None,
    compare_dir: Path | None,
    plot_file: Path | None,
    overwrite: bool,
) -> None:
    """Rates, goodput, latency quantiles, power and MLPerf-style verdicts of a run."""
    from mtia_cluster.output import PLOT_FILE
    from mtia_cluster.results.analysis.plots import check_plot_target
    from mtia_cluster.results.analysis.rollout_plots import is_rollout_dir

    if plot_file is not None:  # refused before any work
        check_plot_target(plot_file)
        claim_output(plot_file, PLOT_FILE, overwrite)
    if is_rollout_dir(run_dir):  # `mtia-cluster rollout` output: its own report and plots
        unsupported = compare_dir is not None or window is not None
        _rollout(run_dir, plot_file, as_json, unsupported, overwrite)
        return
    level = parse_by(by)
    window_ns = parse_window(window) if window is not None else None
    run = open_results(run_dir)
    other = open_results(compare_dir) if compare_dir is not None else None
    doc = run_analysis(run, by=level, window_ns=window_ns)
    if run.summary.get("autoscale"):  # replicas over time (results/autoscale.py)
        doc["autoscale"] = run.summary["autoscale"]
    if plot_file is not None:
        from mtia_cluster.results.analysis.plots import write_plots

        write_plots(plot_file, run, window_ns=window_ns, doc=doc, overwrite=overwrite)
        click.echo(f"wrote {plot_file}", err=True)
    if other is not None:
        _echo_comparison(
            compare_docs(doc, run_analysis(other, by=level, window_ns=window_ns)), as_json
        )
        return
    if as_json:
        echo_json(doc)
        return
    _echo_report(doc)


def _echo_comparison(result: dict[str, Any], as_json: bool) -> None:
    """`--compare`: the two runs' deltas, as JSON or as a table under the runs' names."""
    if as_json:
        echo_json(result)
        return
    click.echo(f"A: {result['a']['run']}\nB: {result['b']['run']}")
    echo_table(*comparison_table(result))


def _echo_report(doc: dict[str, Any]) -> None:
    """The text report of one run: the group table, LLM serving, spill, autoscaling,
    invalid verdicts' reasons, and cost."""
    click.echo(f"run: {doc['run']}  duration {doc['duration_ns'] / 1e9:g} s")
    echo_table(*analysis_table(doc))
    serving = llm_serving_table(doc)
    if serving is not None:
        click.echo("\nLLM serving (per service, then per replica)")
        echo_table(*serving)
    spilled = spill_lines(doc) + network_lines(doc)  # global routing, fabric (#16)
    if spilled:
        click.echo("")
    for line in spilled:
        click.echo(line)
    if doc.get("autoscale"):
        from mtia_cluster.results.autoscale import AUTOSCALE_COLUMNS, autoscale_rows

        click.echo("\nautoscaling (replicas over time: summary.json autoscale.groups[].timeline)")
        echo_table(AUTOSCALE_COLUMNS, autoscale_rows(doc))
    for line in verdict_reasons(doc):
        click.echo(f"INVALID {line}")
    click.echo("\ncost, energy at the wall and carbon (docs/planning.md):")
    echo_table(*analysis_cost_table(doc))


def _rollout(
    run_dir: Path, plot_file: Path | None, as_json: bool, unsupported: bool, overwrite: bool
) -> None:
    """Summary table and, with --plot, the wave Gantt chart and capacity vs demand plots."""
    from mtia_cluster.errors import UserError
    from mtia_cluster.results.analysis import rollout_plots as rp

    if unsupported:
        raise UserError("--compare and --window do not apply to a rollout directory", file=run_dir)
    if plot_file is not None:
        rp.write_rollout_plots(plot_file, run_dir, overwrite=overwrite)
        click.echo(f"wrote {plot_file}", err=True)
    summary = rp.load_summary(run_dir)
    if as_json:
        echo_json(summary)
        return
    click.echo(rp.headline(summary))
    echo_table(*rp.report_rows(summary))
