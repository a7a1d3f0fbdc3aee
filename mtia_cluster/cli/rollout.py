"""`mtia-cluster rollout PLAN -o DIR`: simulate a rollout plan region by region over time."""

from __future__ import annotations

from pathlib import Path

import click

from mtia_cluster.cli._common import echo_json, echo_table, json_option, set_option


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--fast", is_flag=True, help="Per-rack capacity from the cost model, not replay.")
@json_option
@set_option
def rollout(
    plan_path: Path, out_dir: Path, fast: bool, as_json: bool, overrides: tuple[str, ...]
) -> None:
    """Simulate the rollout PLAN hour by hour; write timeline/, events/, summary.json to DIR."""
    from mtia_cluster.fleet import load_plan, run_rollout, write_outputs

    plan = load_plan(plan_path, list(overrides))
    res, summary = run_rollout(plan, fast=fast)
    write_outputs(out_dir, res, summary)
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"{summary['plan']}: capacity from {summary['capacity_source']}; "
        f"waves {', '.join(summary['final_states'])}; "
        f"full rollout {_days(summary['time_to_full_rollout_days'])}, "
        f"done after bake {_days(summary['time_to_rollout_done_days'])}; "
        f"rollbacks {summary['rollbacks']}"
    )
    rows = [
        [r["region"], r["min_headroom"], r["min_headroom_day"], r["slo_violation_minutes"]]
        for r in summary["regions"]
    ]
    echo_table(["region", "min_headroom", "at_day", "slo_violation_min"], rows)
    click.echo(
        f"energy {summary['energy_mwh']:.4g} MWh; perf/W (requests/J) "
        f"{summary['perf_per_w_before']:.4g} -> {summary['perf_per_w_after']:.4g}; "
        f"output {out_dir}"
    )


def _days(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.1f} days"
