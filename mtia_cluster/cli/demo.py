"""`demo`: the README's main job on the embedded default (docs/demo.md).

One day of a two-region fleet played in 10 minutes of simulated time: per region one MTIA 2i
rack serving an early-stage ranking model (LC4, ~10K candidates per request) at 50-75% of
the rack's measured capacity at the evening peak, and one HGX H100 node serving Llama 3.1 70B
chat; a us-east ranking host fails in the morning and is repaired before the peak. The trace
is generated from `configs/traces/demo-day.yaml` next to the results (reused while the spec
is unchanged), replayed on a local Ray started by the program, and the command prints the
summary table, the fleet events, the peak utilization of each pool and the path of the
self-contained HTML report it wrote beside the results (`results/demo-report.html`).
`demo --estimate` prints the cost model's per-accelerator table instead (no Ray).
"""

from __future__ import annotations

from pathlib import Path

import click

from mtia_cluster import fmt
from mtia_cluster.cli._common import echo_json, json_option, overwrite_option
from mtia_cluster.cli.estimate_table import echo_estimate_table, estimate_rows
from mtia_cluster.cli.replay import keep_checkpoints_option
from mtia_cluster.paths import configs_dir

TRACE_SEED = 0


@click.command()
@click.option(
    "-o",
    "--output",
    "out",
    default="results/demo",
    show_default=True,
    type=click.Path(),
    help="Results directory; the HTML report is written beside it as DIR-report.html and the "
    "generated trace as DIR-trace.parquet.",
)
@overwrite_option
@click.option("--estimate", is_flag=True, help="Print the cost-model table instead (no replay).")
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (default: RAY_ADDRESS if set, else a local Ray on 127.0.0.1).",
)
@keep_checkpoints_option
@json_option
def demo(
    out: str,
    overwrite: bool,
    estimate: bool,
    address: str | None,
    keep_checkpoints: bool,
    as_json: bool,
) -> None:
    """A day of a two-region MTIA 2i + H100 fleet in 10 minutes, with a host failure."""
    if estimate:
        rows = estimate_rows()
        echo_json(rows) if as_json else echo_estimate_table(rows)
        return
    from mtia_cluster.cli._common import claim_output
    from mtia_cluster.cli.progress import progress
    from mtia_cluster.cli.replay import echo_run, run_replay
    from mtia_cluster.output import PLOT_FILE, RESULTS_DIR
    from mtia_cluster.traces.generators.demo import ensure_generated

    config = configs_dir() / "scenarios" / "demo.yaml"
    spec = configs_dir() / "traces" / "demo-day.yaml"
    out_path = Path(out)
    trace_path = out_path.with_name(f"{out_path.name}-trace.parquet")
    report_path = out_path.with_name(f"{out_path.name}-report.html")
    claim_output(out_path, RESULTS_DIR, overwrite)  # every output refused before any work
    claim_output(report_path, PLOT_FILE, overwrite)
    say = (lambda text: None) if as_json else (lambda text: click.echo(text, err=True))
    say(f"mtia-cluster demo: {config.name} on a trace from {spec.name} (local Ray)")
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    with progress("generating trace", "streams", as_json=as_json) as bar:
        _, fresh = ensure_generated(trace_path, spec, TRACE_SEED, progress=bar.update)
    say(f"trace {trace_path} ({'generated' if fresh else 'reused: same spec and seed'})")
    path = run_replay(
        str(config),
        str(trace_path),
        out,
        placement="region",
        shards=None,
        seed=None,
        overrides=(),
        address=address,
        overwrite=overwrite,
        keep_checkpoints=keep_checkpoints,
        quiet=as_json,
        check_trace_first=False,  # generated here: checked while the shards start
    )
    report, peaks, events = _report(path, report_path, overwrite)
    echo_run(path, as_json)
    if as_json:
        return
    _echo_story(events, peaks)
    click.echo(f"\nHTML report: {report}")


def _report(
    path: Path, report_path: Path, overwrite: bool
) -> tuple[Path, list[tuple[str, str, float, float]], list[dict]]:
    """Write the HTML report beside the run (the run directory holds only what its manifest
    lists); return it, each pool's peak utilization and the fleet events."""
    from mtia_cluster.results import open_results
    from mtia_cluster.results.analysis.plots import collect, write_plots

    run = open_results(path)
    data = collect(run, None)
    report = write_plots(report_path, run, data=data, overwrite=overwrite)
    peaks = []
    for panel in data.panels:
        for region, values in panel.values["utilization_pct"].items():
            times = panel.times_s[region]
            best = max(range(len(values)), key=lambda i: values[i] or 0.0)
            peaks.append((region, panel.service, (values[best] or 0.0) / 100, times[best]))
    return report, peaks, list(run.manifest.get("fleet_events") or [])


def _echo_story(events: list[dict], peaks: list[tuple[str, str, float, float]]) -> None:
    """The fleet events applied and the busiest interval of each pool."""
    click.echo("\nfleet events:")
    for ev in events:
        moved = ev.get("requests_retried", 0)
        extra = f", {moved:,} queued/running requests retried elsewhere" if moved else ""
        click.echo(
            f"  t = {ev['at_ns'] / 1e9:6.1f} s  {ev['kind']:<7} {ev['region']}: "
            f"{fmt.count(ev['cells'], 'cell')}{extra}"  # a cell: an R&R host, an LLM replica
        )
    click.echo("peak utilization per pool (busiest metrics interval):")
    for region, service, util, t_s in peaks:
        click.echo(f"  {region:<8} {service:<11} {util:.2f} at t = {t_s:,.0f} s")
