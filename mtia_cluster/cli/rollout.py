"""`mtia-cluster rollout PLAN -o DIR`: a rollout plan's timeline, region by region over time,
with exact replays of the moments that matter."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mtia_cluster.cli._common import (
    claim_output,
    echo_json,
    echo_table,
    json_option,
    overwrite_option,
    set_option,
)
from mtia_cluster.cost.view import rollout_cost_line
from mtia_cluster.fmt import number

if TYPE_CHECKING:
    from mtia_cluster.rollout.plan import Plan


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path))
@overwrite_option
@click.option(
    "--fast",
    is_flag=True,
    help="Per-rack capacity from the cost model and no exact replays (gates on timeline figures).",
)
@click.option(
    "--no-replay",
    "no_replay",
    is_flag=True,
    help="No exact replays at the moments that matter (gates on timeline figures).",
)
@click.option(
    "--optimize",
    "do_optimize",
    is_flag=True,
    help="Also search wave order/size and install rate (plan's optimize: section).",
)
@json_option
@set_option
def rollout(
    plan_path: Path,
    out_dir: Path,
    overwrite: bool,
    fast: bool,
    no_replay: bool,
    do_optimize: bool,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """Run the rollout PLAN's timeline step by step, with exact replays of the moments that
    matter; write timeline/, events/, replays/ and summary.json to DIR."""
    from mtia_cluster.cli.progress import progress
    from mtia_cluster.output import ROLLOUT_DIR
    from mtia_cluster.rollout import load_plan, run_rollout, write_outputs

    claim_output(out_dir, ROLLOUT_DIR, overwrite)  # refused before any work
    plan = load_plan(plan_path, list(overrides))
    with progress("rollout", "steps", as_json=as_json) as bar:
        res, summary = run_rollout(
            plan, fast=fast, replay=False if no_replay else None, progress=bar.update
        )
    if do_optimize:
        summary["optimize"] = _optimized(plan, res.cohorts)
    write_outputs(out_dir, res, summary, overwrite=overwrite)
    if as_json:
        echo_json(summary)
        return
    _echo_summary(summary, out_dir)


def _optimized(plan: Plan, cohorts: dict[str, Any]) -> dict[str, Any]:
    """summary.json `optimize`: the plan as given, the best feasible candidate, how many."""
    from mtia_cluster.rollout.optimize import optimize

    given, best, tried = optimize(plan, cohorts)
    return {
        "headroom_margin": plan.optimize.headroom_margin if plan.optimize else 0.0,
        "given": given.as_dict(),
        "best": best.as_dict() if best else None,
        "candidates": len(tried),
    }


def _echo_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """The summary as text: waves, cohorts, regions, energy, and the optional sections."""
    click.echo(
        f"{summary['plan']}: capacity from {summary['capacity_source']}; "
        f"waves {', '.join(summary['final_states'])}; "
        f"full rollout {_days(summary['time_to_full_rollout_days'])}, "
        f"done after bake {_days(summary['time_to_rollout_done_days'])}; "
        f"rollbacks {summary['rollbacks']}; gates on {summary['gate_metrics']} metrics"
    )
    _echo_cohorts(summary["cohorts"])
    rows = [
        [r["region"], r["min_headroom"], r["min_headroom_day"], r["slo_violation_minutes"]]
        for r in summary["regions"]
    ]
    echo_table(["region", "min_headroom", "at_day", "slo_violation_min"], rows)
    click.echo(
        f"energy {number(float(summary['energy_mwh']))} MWh; {rollout_cost_line(summary)}; "
        f"perf/W (requests/J) {number(float(summary['perf_per_w_before']))} -> "
        f"{number(float(summary['perf_per_w_after']))}; "
        f"output {out_dir}"
    )
    if summary["outages"]["count"]:
        _echo_outages(summary["outages"])
    if summary["replays"]:
        _echo_replays(summary)
    if summary.get("drill"):
        _echo_drill(summary)
    if "optimize" in summary:
        _echo_optimize(summary["optimize"])


def _echo_cohorts(cohorts: dict) -> None:
    """Per-rack capacity of each cohort, where it came from and its search's bracket."""
    for version, c in cohorts.items():
        bracket = "" if c["rps_upper"] is None else f", fails at {c['rps_upper']:.4g}"
        click.echo(
            f"capacity {version} {c['label']}: {c['rps']:.4g} req/s per rack, "
            f"{c['power_w'] / 1e3:.4g} kW ({c['source']}: {c['capacity_detail']}{bracket})"
        )


def _echo_replays(summary: dict) -> None:
    """The replayed moments: timeline vs exact engine, and whether they agree. Two tables of
    at most ~90 columns (what happened, then the figures) in the units people read: rates in
    k/M requests/s, p99 in ms, error rate in %."""
    who, figures = [], []
    for r in summary["replays"]:
        sliced = r["slice_hosts_old"] is not None and (
            r["slice_hosts_old"] + r["slice_hosts_new"]
            < r["region_hosts_old"] + r["region_hosts_new"]
        )
        hosts = (
            "-" if r["slice_hosts_old"] is None
            else f"{r['slice_hosts_old']}+{r['slice_hosts_new']}"
            f"{' slice' if sliced else ''}"
        )  # fmt: skip
        where = [r["kind"], r["wave"], r["region"], f"{r['day']:.2f}"]
        who.append(
            [*where, f"{r['racks_old_serving']}+{r['racks_new_serving']}", hosts,
             r["verdict"] or "-", "yes" if r["agrees"] else "NO"]
        )  # fmt: skip
        figures.append(
            [*where, _rate(r["demand_rps"]), _rate(r["capacity_rps"]),
             _rate(r["replayed_throughput_rps"]), _ms(r["p99_s"]), _ms(r["new_p99_s"]),
             _pct(r["new_error_rate"])]
        )  # fmt: skip
    click.echo(
        f"exact replays ({summary['replay_disagreements']} disagree with the timeline; "
        "racks old+new serving, hosts replayed old+new;\na slice runs at the region's "
        "utilization and its throughput is scaled to the region):"
    )
    echo_table(
        ["moment", "wave", "region", "day", "racks", "hosts", "replay_verdict", "agrees"], who
    )
    click.echo("")
    echo_table(
        ["moment", "wave", "region", "day", "demand/s", "capacity/s", "replayed/s", "p99 ms",
         "new p99 ms", "new err"],
        figures,
    )  # fmt: skip


def _echo_drill(summary: dict) -> None:
    """One line per replayed moment's N-1 drill: p99 before and after the racks fail."""
    d = summary["drill"]
    rows = []
    for r in summary["replays"]:
        if r.get("drill_verdict") is None:
            continue
        failed = (r["drill_hosts_failed_old"] or 0) + (r["drill_hosts_failed_new"] or 0)
        rows.append(
            [r["kind"], r["wave"], r["region"], round(r["day"], 2),
             f"{r['drill_racks_old']}+{r['drill_racks_new']}", failed,
             _ms(r["drill_p99_before_s"]), _ms(r["drill_p99_after_s"]),
             _g(r["drill_error_rate_after"]), r["drill_requests_retried"],
             r["drill_requests_failed"], "yes" if r["drill_timeline_ok"] else "NO",
             r["drill_verdict"]]
        )  # fmt: skip
    click.echo(
        f"N-1 drill ({d['racks']} rack(s) fail at {d['at_fraction']:g} of each replay, "
        f"{d['on_failure']}; {d['n1_ok']} of {d['moments']} moments N-1 OK):"
    )
    echo_table(
        ["moment", "wave", "region", "day", "racks_out", "slice_hosts_failed", "p99_before_ms",
         "p99_after_ms", "err_after", "retried", "failed", "timeline_ok", "verdict"],
        rows,
    )  # fmt: skip


def _echo_outages(o: dict) -> None:
    """Whole-region outages: how long, what they cost and how close the others came."""
    worst = (
        "no other region up"
        if o["worst_headroom_during"] is None
        else f"worst headroom of the other regions {o['worst_headroom_during']:.3f} "
        f"({o['worst_headroom_region']}, day {o['worst_headroom_day']:.2f})"
    )
    click.echo(
        f"region outages: {o['count']} ({o['outage_minutes']:g} region-minutes down), "
        f"failover {o['failover']}: {worst}; SLO-violation minutes caused "
        f"{o['slo_violation_minutes_caused']:g}; "
        f"requests failed over {o['failover_requests']:.4g}, "
        f"lost {o['lost_requests']:.4g}"
    )


def _g(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.4g}"


def _rate(x: float | None) -> str:
    """Requests/s as 18.0M, 512k, 37.5."""
    if x is None or x != x:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.2g}%"


def _ms(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x * 1e3:.1f}"


def _echo_optimize(opt: dict) -> None:
    """Print the given plan next to the best feasible one."""
    click.echo(
        f"optimize: {opt['candidates']} candidates, headroom margin {opt['headroom_margin']:g}"
    )
    rows = []
    for label in ("given", "best"):
        c = opt[label]
        if c is None:
            rows.append([label, "no feasible candidate", "-", "-", "-", "-"])
            continue
        waves = " | ".join(",".join(w) for w in c["waves"])
        done = "not done" if c["done_days"] is None else f"{c['done_days']:.1f}"
        rows.append(
            [label, waves, c["install_racks_per_day"], done, c["min_headroom"], c["feasible"]]
        )
    echo_table(["plan", "waves", "racks/day", "done_days", "min_headroom", "feasible"], rows)


def _days(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.1f} days"
