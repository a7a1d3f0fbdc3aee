"""`demo`: the README's main job on the embedded default.

Replays the shipped two-region scenario (`configs/scenarios/multi-region.yaml`) on the shipped
generated trace (`traces/demo.parquet`, regenerated if missing) on a local Ray started by the
program, writes `results/demo/` and prints the summary table. `demo --estimate` prints the
cost model's per-accelerator table instead (no Ray).
"""

from __future__ import annotations

import click

from mtia_cluster.cli._common import echo_json, json_option, overwrite_option
from mtia_cluster.cli.estimate_table import echo_estimate_table, estimate_rows
from mtia_cluster.paths import configs_dir, shipped_traces_dir


@click.command()
@click.option(
    "-o",
    "--output",
    "out",
    default="results/demo",
    show_default=True,
    type=click.Path(),
    help="Results directory.",
)
@overwrite_option
@click.option("--estimate", is_flag=True, help="Print the cost-model table instead (no replay).")
@click.option("--address", default=None, help="Ray cluster to join (default: local Ray).")
@json_option
def demo(out: str, overwrite: bool, estimate: bool, address: str | None, as_json: bool) -> None:
    """Replay a two-region MTIA 2i + H100 fleet on local Ray and summarize it."""
    if estimate:
        rows = estimate_rows()
        echo_json(rows) if as_json else echo_estimate_table(rows)
        return
    from mtia_cluster.cli.replay import echo_run, run_replay

    trace = shipped_traces_dir() / "demo.parquet"
    if not trace.exists():
        from mtia_cluster.traces.generators.demo import generate_demo_trace

        generate_demo_trace(trace, seed=0)
    config = configs_dir() / "scenarios" / "multi-region.yaml"
    click.echo(f"mtia-cluster demo: replaying {trace.name} on {config.name} (local Ray)", err=True)
    path = run_replay(
        str(config),
        str(trace),
        out,
        placement="region",
        shards=None,
        seed=None,
        overrides=(),
        address=address,
        overwrite=overwrite,
    )
    echo_run(path, as_json)
