"""The console view of a summary.json document, shared by `simulate`, `replay` and `demo`.

Every figure printed is read from the summary document (the same dict `--json` prints and
summary.json holds), converted for people by `mtia_cluster.fmt` only: latency figures are
named by what they are (R&R `latency`; LLM `e2e`, `TTFT`, `TPOT`), never pooled across R&R
and LLM services; utilization is a percent.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from mtia_cluster import fmt
from mtia_cluster.cli._common import echo_json, echo_table
from mtia_cluster.cost.view import COST_HEADERS, cost_rows
from mtia_cluster.results.analysis.report import GROUP_HEADERS, group_rows
from mtia_cluster.results.verdict import rules_text


def echo_summary_table(summary: dict[str, Any]) -> None:
    """The per-group table, then the reasons of every group that is not VALID."""
    echo_table(GROUP_HEADERS, group_rows(summary))
    click.echo(
        "\n(latency: end to end, R&R and LLM (e2e); TTFT/TPOT: LLM only; verdict: "
        "MLPerf-LoadGen-style against the scenario's SLO, as summary.json; rules: "
        f"{rules_text(summary.get('rules'))})"
    )
    costs = cost_rows(summary)
    if costs:  # cost, energy at the wall and carbon (docs/planning.md)
        click.echo("")
        echo_table(COST_HEADERS, costs)
    for g in summary["groups"]:
        reasons = g["verdict"].get("reasons") or []
        if g["verdict"]["result"] != "VALID" and reasons:
            click.echo(
                f"  {g['region']}/{g['service']} {g['verdict']['result']}: "
                + "; ".join(map(str, reasons))
            )


def echo_run_lines(summary: dict[str, Any], fleet_events: list[dict[str, Any]]) -> None:
    """The lines under a run's header, the same for `simulate` and `replay`: one per fleet
    event the run applied and one per autoscaled group (results/autoscale.py)."""
    for ev in fleet_events:
        cells = fmt.count(ev["cells"], "cell")
        click.echo(
            f"event at {fmt.duration(ev['at_ns'])}: {ev['kind']} {cells} in "
            f"{ev['region']}, {ev['requests_retried']} requests retried, "
            f"{ev['requests_failed']} failed"
        )
    for g in (summary.get("autoscale") or {}).get("groups", []):
        click.echo(
            f"autoscale {g['region']}/{g['service']}: replicas {g['replicas_min']}-"
            f"{g['replicas_max']} (mean {fmt.number(g['replicas_mean'])}), "
            f"{g['scale_ups']} scale-ups, {g['scale_downs']} scale-downs"
        )


def invalid_groups(summary: dict[str, Any]) -> list[str]:
    """`region/service` of every group whose verdict is INVALID."""
    return [
        f"{g['region']}/{g['service']}"
        for g in summary["groups"]
        if g["verdict"]["result"] == "INVALID"
    ]


def echo_summary(summary: dict[str, Any], as_json: bool, fail_on_invalid: bool) -> None:
    """Print the summary (the document itself with --json, else the table) and, with
    `fail_on_invalid`, exit 1 when any group's verdict is INVALID."""
    if as_json:
        echo_json(summary)
    else:
        echo_summary_table(summary)
    bad = invalid_groups(summary)
    if fail_on_invalid and bad:
        click.echo(f"--fail-on-invalid: INVALID verdict for {', '.join(bad)}", err=True)
        sys.exit(1)


fail_on_invalid_option = click.option(
    "--fail-on-invalid",
    is_flag=True,
    help="Exit with status 1 when any (region, service) verdict is INVALID (for CI).",
)
