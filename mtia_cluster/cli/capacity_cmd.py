"""`capacity`: the highest offered rate that meets the SLO, per chip, side by side."""

from __future__ import annotations

from typing import Any

import click

from mtia_cluster.cli._common import echo_json, echo_table, json_option, set_option
from mtia_cluster.planning.capacity import CapacityResult
from mtia_cluster.slo import ServiceSLO

# table header -> CapacityResult field
COLUMNS = {
    "chip": "chip",
    "platform": "platform",
    "req/s": "requests_per_s",
    "throughput": "work_per_s",
    "unit": "work_unit",
    "per accel": "per_accelerator",
    "per host": "per_host",
    "accel W": "accelerator_power_w",
    "host W": "host_power_w",
    "per J": "perf_per_w",
    "bound": "bound",
}


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--service", required=True, help="Service of CONFIG to size.")
@click.option(
    "--slo",
    "slo_text",
    default=None,
    help="p99=100ms, or ttft_p99=2s,tpot_p99=200ms (default: CONFIG's slo).",
)
@click.option(
    "--chips",
    default=None,
    help="Comma-separated chips to compare (default: the chip serving it in CONFIG).",
)
@click.option(
    "--scenario",
    "mode",
    type=click.Choice(["server", "offline"]),
    default="server",
    show_default=True,
    help="server: under the SLO; offline: no latency bound.",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster for the parallel replays (default: RAY_ADDRESS if set, else a local "
    "Ray; 'inprocess').",
)
@set_option
@json_option
def capacity(
    config: str,
    service: str,
    slo_text: str | None,
    chips: str | None,
    mode: str,
    address: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Throughput at SLO per accelerator, host and platform unit, perf/W and the bottleneck."""
    from mtia_cluster.config.scenario import load_scenario
    from mtia_cluster.errors import UserError
    from mtia_cluster.planning.capacity import parse_slo

    scenario = load_scenario(config, overrides)
    pools = [p for r in scenario.regions for p in r.pools if p.service == service]
    if not pools:
        raise UserError(
            f"no pool serves it (services: {', '.join(scenario.services)})",
            file=config,
            field="--service",
            value=service,
        )
    slo = parse_slo(slo_text) if slo_text else scenario.slo.get(service, ServiceSLO())
    if mode == "server" and not slo.bounded:
        raise UserError(
            "no SLO for this service in the config; give --slo", field="--slo", value=service
        )
    from mtia_cluster.catalog import load_catalog

    cat = load_catalog()
    names = chips.split(",") if chips else [cat.platform(pools[0].platform).chip]
    for name in names:
        cat.chip(name)  # unknown chips fail before any replay
    results = _run(names, pools[0].model, slo, mode == "offline", address, as_json)
    rows = [r.as_dict() for r in results]
    if as_json:
        echo_json(rows)
        return
    echo_table(list(COLUMNS), [[r[key] for key in COLUMNS.values()] for r in rows])
    _echo_floor_notes(rows)


def _echo_floor_notes(rows: list[dict[str, Any]]) -> None:
    """One line per chip whose search found no rate: it stopped at its floor."""
    from mtia_cluster.planning.capacity import MAX_REPLAY_SPAN_S

    for r in rows:
        if r["scenario"] == "server" and not r["requests_per_s"]:
            click.echo(
                f"note: {r['chip']}: no rate down to {r['min_rate_rps']:.4g} req/s "
                f"meets the SLO (the search's floor: a candidate's replay spans at most "
                f"{MAX_REPLAY_SPAN_S:,.0f} simulated s)",
                err=True,
            )


def _run(
    names: list[str], model: str, slo: ServiceSLO, offline: bool, address: str | None, quiet: bool
) -> list[CapacityResult]:
    """Each chip's search; its candidate rates replay as parallel Ray tasks."""
    from mtia_cluster.cli.progress import progress
    from mtia_cluster.planning.capacity import capacity as run_capacity

    def each() -> list[CapacityResult]:
        out = []
        for n in names:
            with progress(f"capacity {n}", "replays", as_json=quiet) as bar:
                out.append(run_capacity(model, n, slo, offline=offline, progress=bar.update))
        return out

    if address == "inprocess":
        return each()
    from mtia_cluster.distributed.ray_env import ray_session

    with ray_session(address, namespace="mtia-cluster-capacity"):
        return each()
