"""`replay`: launch shard actors on Ray, replay a trace, write the results directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mtia_cluster import fmt
from mtia_cluster.cli._common import claim_output, json_option, overwrite_option, set_option
from mtia_cluster.cli.summary_view import echo_run_lines, echo_summary, fail_on_invalid_option
from mtia_cluster.distributed.placement import PLACEMENTS

keep_checkpoints_option = click.option(
    "--keep-checkpoints",
    is_flag=True,
    help="Keep the shards' checkpoints (DIR/_checkpoints/, cloudpickle) after success; "
    "by default they are removed once the run is complete.",
)


def echo_run(path: Path, as_json: bool, fail_on_invalid: bool = False) -> None:
    """A finished run: its summary.json (--json) or a header line and the summary table."""
    from mtia_cluster.results import open_results

    res = open_results(path)
    if not as_json:
        m = res.manifest
        shards, nodes = m["shards"], m.get("nodes")
        click.echo(
            f"{path}: {m['counts']['requests']:,} requests, "
            f"{fmt.number(m['simulated_span_ns'] / 1e9)} s simulated in "
            f"{m['wall_time_s']:.1f} s ({shards} shard{'s' * (shards != 1)}, {m.get('mode')}, "
            f"{nodes} node{'s' * (nodes != 1)})"
        )
        echo_run_lines(res.summary, list(m.get("fleet_events") or []))
        click.echo("")
    echo_summary(res.summary, as_json, fail_on_invalid)


def _address(config: str | None, fleet: str | None, address: str | None) -> str | None:
    """The Ray address to replay on: a launched fleet's (`--fleet`), else `--address`;
    without a fleet a CONFIG is required."""
    if fleet is not None:
        from mtia_cluster.distributed.launched import fleet_address

        return fleet_address(fleet)  # refuses an unknown or dead fleet, exit 2
    if config is None:
        raise click.UsageError("give CONFIG, or --fleet FLEET to replay on a launched fleet")
    return address


def _with_progress(
    run: Callable[[Any], Path], address: str | None, fleet: str | None, quiet: bool
) -> Path:
    """`run(bar)` under a progress display, inside a Ray session (started or joined, in the
    fleet's namespace for a launched fleet) unless the replay is in-process."""
    from mtia_cluster.cli.progress import progress
    from mtia_cluster.distributed.ray_env import ray_session

    if address == "inprocess":
        with progress("replaying", "requests", as_json=quiet) as bar:
            return run(bar)
    namespace = "mtia-cluster-replay"
    if fleet is not None:
        from mtia_cluster.distributed.ray_env import fleet_namespace

        namespace = fleet_namespace(fleet)
    # Ray first: a failure to start or join is its one line, not under a progress display
    with (
        ray_session(address, namespace=namespace),
        progress("replaying", "requests", as_json=quiet) as bar,
    ):
        return run(bar)


def run_replay(
    config: str | None,
    trace: str,
    out: str,
    *,
    placement: str,
    shards: int | None,
    seed: int | None,
    overrides: tuple[str, ...],
    address: str | None,
    fleet: str | None = None,
    overwrite: bool = False,
    keep_checkpoints: bool = False,
    quiet: bool = False,
    check_trace_first: bool = True,
) -> Path:
    """Start or join Ray, replay with a progress bar, return the results directory.

    `check_trace_first=False` (the demo, whose trace this package generated) checks the trace
    while Ray starts the shards instead of before Ray starts."""
    from mtia_cluster.distributed.prepare import refuse_fleet_overrides
    from mtia_cluster.distributed.runner import ReplayOptions, prepare, replay
    from mtia_cluster.output import RESULTS_DIR

    refuse_fleet_overrides(fleet, overrides)
    claim_output(out, RESULTS_DIR, overwrite)  # refused before any work

    address = _address(config, fleet, address)
    opt = ReplayOptions(
        placement=placement,
        shards=shards,
        address=address,
        overrides=overrides,
        seed=seed,
        fleet=fleet,
        overwrite=overwrite,
        keep_checkpoints=keep_checkpoints,
    )
    # bad input fails here, before Ray starts; a trace the caller just generated itself may be
    # checked while the shard processes start instead (replay() does that without it)
    ready = prepare(config or "", trace, opt, with_trace=check_trace_first)

    def run(bar: Any) -> Path:
        def report(done: int, total: int, t_ns: int) -> None:
            bar.update(done, total, f"simulated {t_ns / 1e9:,.0f} s")

        return replay(config or "", trace, out, opt, report, prepared=ready)

    return _with_progress(run, address, fleet, quiet)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--fleet", default=None, help="Replay on a launched fleet (see `launch`).")
@click.option(
    "--trace",
    "trace",
    required=True,
    type=click.Path(dir_okay=False),
    help="Trace (Parquet) to replay.",
)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(),
    help="Results directory to write (atomically).",
)
@overwrite_option
@click.option(
    "--placement",
    type=click.Choice(PLACEMENTS),
    default="region",
    show_default=True,
    help="One Ray actor per region, rack or host.",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=None,
    help="N shard actors instead of a placement.",
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@set_option
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto); default: RAY_ADDRESS "
    "if set, else an embedded local Ray ('local' forces it); 'inprocess': no Ray.",
)
@keep_checkpoints_option
@json_option
@fail_on_invalid_option
def replay(
    config: str | None,
    fleet: str | None,
    trace: str,
    out: str,
    overwrite: bool,
    placement: str,
    shards: int | None,
    seed: int | None,
    overrides: tuple[str, ...],
    address: str | None,
    keep_checkpoints: bool,
    as_json: bool,
    fail_on_invalid: bool,
) -> None:
    """Replay TRACE on the fleet of CONFIG (or a launched --fleet); write the results."""
    path = run_replay(
        config,
        trace,
        out,
        placement=placement,
        shards=shards,
        seed=seed,
        overrides=overrides,
        address=address,
        fleet=fleet,
        overwrite=overwrite,
        keep_checkpoints=keep_checkpoints,
        quiet=as_json,
    )
    echo_run(path, as_json, fail_on_invalid)
