"""`plan`: the cheapest fleet per region that meets the SLOs with an N-1 margin."""

from __future__ import annotations

from typing import Any

import click

from mtia_cluster import fmt
from mtia_cluster.cli._common import echo_json, echo_table, json_option, overwrite_option


@click.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    "out",
    default=None,
    type=click.Path(),
    help="Directory for plan.json, the winner's scenario.yaml and its peak trace.parquet.",
)
@overwrite_option
@click.option(
    "--confirm/--no-confirm",
    default=True,
    show_default=True,
    help="Confirm the finalists by exact replays (--no-confirm: cost-model estimates only).",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster for the replays (default: RAY_ADDRESS if set, else a local Ray on "
    "127.0.0.1; 'inprocess': no Ray).",
)
@json_option
def plan(
    plan_file: str,
    out: str | None,
    overwrite: bool,
    confirm: bool,
    address: str | None,
    as_json: bool,
) -> None:
    """Search chips x settings for the cheapest fleet per region that meets PLAN's SLOs."""
    from mtia_cluster.catalog import load_catalog
    from mtia_cluster.cli._common import claim_output
    from mtia_cluster.output import PLAN_DIR
    from mtia_cluster.planning.plan_file import load_plan
    from mtia_cluster.planning.plan_output import json_safe, write_plan

    cat = load_catalog()
    checked = load_plan(plan_file, cat)  # every input problem: one line, exit 2, no work
    if out is not None:
        claim_output(out, PLAN_DIR, overwrite)  # refused before any work
    result = json_safe(_run(checked, cat, confirm, address, as_json))
    if out is not None:
        write_plan(out, cat, checked, result, overwrite=overwrite)
    if as_json:
        echo_json(result)
    else:
        _echo(result, out)
    missing = result["totals"]["missing"]
    if missing:
        from mtia_cluster.errors import RunFailed

        raise RunFailed(f"no candidate met the SLO for {', '.join(missing)}")


def _run(checked: Any, cat: Any, confirm: bool, address: str | None, quiet: bool) -> Any:
    """The search under a progress display; its replays as Ray tasks unless in process."""
    from mtia_cluster.cli.progress import progress
    from mtia_cluster.planning.plan_search import run_plan

    def each() -> Any:
        with progress("plan", "replays", as_json=quiet) as bar:
            return run_plan(checked, cat, replays=confirm, progress=bar.update)

    if address == "inprocess" or not confirm:
        return each()
    from mtia_cluster.distributed.ray_env import ray_session

    with ray_session(address, namespace="mtia-cluster-plan"):
        return each()


# winners table: header -> key of the winner's cost row (None: computed below)
WINNER_COLUMNS = {
    "units": "units",
    "accel": "accelerators",
    "capex $/y": "capex_usd_per_year",
    "energy $/y": "energy_usd_per_year",
    "cost $/y": "cost_usd_per_year",
    "kWh/y": "facility_energy_kwh_per_year",
    "tCO2e/y": "co2e_t_per_year",
    "$/M queries": "usd_per_m_queries",
}


def _echo(result: dict[str, Any], out: str | None) -> None:
    """Console tables: the winners, the fleet's totals, why, the Pareto fronts."""
    click.echo(f"plan {result['plan']}: cost in USD per year, energy at the wall per year")
    rows, whys = [], []
    for w in result["winners"]:
        row = w["winner"]
        if row is None:
            rows.append([w["region"], w["service"], "(none met the SLO)"] + [None] * 9)
            continue
        cost, ratio = row["cost"], (row.get("replay") or {}).get("slo_ratio")
        rows.append(
            [w["region"], w["service"], row["label"]]
            + [cost[k] for k in WINNER_COLUMNS.values()]
            + [ratio]
        )
        whys.append(f"  {w['region']} {w['service']}: {row['why']}")
    echo_table(["region", "service", "winner", *WINNER_COLUMNS, "p99/SLO"], rows)
    t = result["totals"]["fleet"]
    click.echo(
        f"\nfleet: {fmt.number(t['cost_usd_per_year'])} $/year (capex "
        f"{fmt.number(t['capex_usd_per_year'])}, energy {fmt.number(t['energy_usd_per_year'])}), "
        f"{fmt.number(t['facility_energy_kwh_per_year'])} kWh/year, "
        f"{fmt.number(t['co2e_t_per_year'])} tCO2e/year, {int(t['accelerators'])} accelerators"
    )
    click.echo("why the winners win:\n" + "\n".join(whys))
    _echo_pareto(result["pareto"])
    how = "replays confirmed" if result["confirmed"] else "estimates only (--no-confirm)"
    click.echo(
        f"\n{len(result['candidates'])} candidate x region rows, {result['replays']} replays "
        f"({how}), search {result['search_s']:.1f} s" + (f"; written to {out}" if out else "")
    )


def _echo_pareto(pareto: dict[str, list[dict[str, Any]]]) -> None:
    """Each service's Pareto front (cost and energy over all its regions, per year)."""
    keys = ("cost_usd_per_year", "p99_over_slo", "facility_energy_kwh_per_year")
    for service, front in pareto.items():
        click.echo(f"\nPareto front of {service} (all regions; p99/SLO in its largest region):")
        rows = [[_front_label(p), *(p[k] for k in keys)] for p in front]
        echo_table(["candidate", "cost $/y", "p99/SLO", "kWh/y"], rows)


def _front_label(entry: dict[str, Any]) -> str:
    """A front entry's candidate, with how many others have exactly its figures."""
    same = len(entry.get("identical", []))
    return entry["label"] + (f" (+{same} identical)" if same else "")
