"""`launch`, `status`, `down`: simulated fleets as detached actors on a Ray cluster."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import click

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli._common import echo_json, echo_table, json_option, set_option
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.distributed.placement import PLACEMENTS
from mtia_cluster.distributed.runner import ReplayOptions, plan
from mtia_cluster.engine.simulation import Simulation


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--name", "name", default=None, help="Fleet name (default: the scenario's).")
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (HOST:PORT or auto); default: RAY_ADDRESS if set, else "
    "start a persistent local Ray head on 127.0.0.1.",
)
@click.option("--placement", type=click.Choice(PLACEMENTS), default="region", show_default=True)
@click.option("--shards", type=click.IntRange(min=1), default=None)
@set_option
@json_option
def launch(
    config: str,
    name: str | None,
    address: str | None,
    placement: str,
    shards: int | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create the fleet of CONFIG as detached, named actors (one per shard)."""
    from mtia_cluster.distributed import launched as fl
    from mtia_cluster.distributed.ray_env import resolve_address

    started = time.monotonic()
    scenario = load_scenario(config, overrides)
    fleet = fl.check_name(name or scenario.name.lower().replace("_", "-"))
    with fl.name_lock(fleet):  # a concurrent launch of the name is refused here
        if fl.record_path(fleet).exists():
            raise fl.UserError(
                "a fleet of that name is launched; `down` it first", field="--name", value=fleet
            )
        sim = Simulation(scenario, load_catalog())  # validates everything before any actor
        regions, cells = plan(sim, ReplayOptions(placement=placement, shards=shards))
        address = resolve_address(address)
        head = fl.start_local_head(None) if address is None else None
        try:
            info = {
                "name": fleet,
                "address": head["address"] if head else address,
                "started_local_head": head is not None,
                "head": head,
                "config": scenario.raw,
                "file": scenario.file,
                "placement": placement if shards is None else f"shards={shards}",
                "region_groups": regions,
                "cells": cells,
                **fl.describe(sim, len(cells)),
            }
            info["nodes_used"] = _create_actors(info, len(cells))
            info["launch_s"] = round(time.monotonic() - started, 2)
            fl.save_record(fleet, info)
        except BaseException:
            if head is not None:  # nothing of a failed launch stays running
                fl.stop_local_head(head)
            raise
    _print_fleet(info, as_json)


def _create_actors(info: dict[str, Any], shards: int) -> int:
    """The fleet's detached actors; returns the number of nodes their shards landed on."""
    from mtia_cluster.distributed import launched as fl
    from mtia_cluster.distributed import ray_env

    ray_env.connect(info["address"], namespace=ray_env.fleet_namespace(info["name"]))
    opts: dict[str, Any] = {"lifetime": "detached", "num_cpus": 0}
    ray_env.actor(fl.FleetInfo, name=fl.INFO_ACTOR, **opts).remote(info)
    hosts = [
        ray_env.actor(
            fl.ShardHost,
            name=f"shard-{i:04d}",
            max_restarts=-1,
            scheduling_strategy="SPREAD",
            **opts,
        ).remote()
        for i in range(shards)
    ]
    return len(set(ray_env.get([h.ping.remote() for h in hosts])))


def _print_fleet(info: dict[str, Any], as_json: bool, alive: int | None = None) -> None:
    keys = (
        "name",
        "address",
        "placement",
        "regions",
        "racks",
        "hosts",
        "accelerators",
        "accelerators_by_chip",
        "shards",
        "nodes_used",
        "launch_s",
    )
    row = {k: info.get(k) for k in keys}
    if alive is not None:
        row["shards_alive"] = alive
    if as_json:
        echo_json(row)
        return
    echo_table(["field", "value"], [[k, v] for k, v in row.items()])


@click.command()
@click.argument("fleet", required=False)
@json_option
def status(fleet: str | None, as_json: bool) -> None:
    """Show launched fleets (or one) and how many of their shard actors answer."""
    from mtia_cluster.distributed import launched as fl

    names = [fleet] if fleet else sorted(p.stem for p in (fl.home() / "fleets").glob("*.json"))
    out = []
    for name in names:
        info = fl.load_record(name)
        info["shards_alive"] = _alive(info)
        out.append(info)
    if as_json:
        drop = ("config", "cells", "region_groups")
        echo_json([{k: v for k, v in i.items() if k not in drop} for i in out])
        return
    if not out:
        click.echo("no launched fleets")
    for info in out:
        _print_fleet(info, False, alive=info["shards_alive"])


def _alive(info: dict[str, Any]) -> int:
    """Shard actors of the fleet that answer a ping within a few seconds (0 if unreachable)."""
    from mtia_cluster.distributed import launched as fl
    from mtia_cluster.distributed import ray_env
    from mtia_cluster.distributed.ray_env import connect, fleet_namespace
    from mtia_cluster.errors import UserError

    head = info.get("head")
    if info.get("started_local_head") and not (head and fl.head_alive(head)):
        return 0  # its head is gone (its port may serve another Ray now: never join that)
    try:
        connect(info["address"], namespace=fleet_namespace(info["name"]))
    except UserError:
        return 0
    alive = 0
    for i in range(info["shards"]):
        try:
            h = ray_env.named_actor(f"shard-{i:04d}", fleet_namespace(info["name"]))
            ray_env.get(h.ping.remote(), timeout=10)
            alive += 1
        except Exception:  # any failure means "not alive"
            pass
    ray_env.shutdown()  # the next fleet may live on another cluster
    return alive


@click.command()
@click.argument("fleet")
def down(fleet: str) -> None:
    """Remove a launched fleet: stop the local Ray head `launch` started for it (exactly its
    recorded processes, waiting until none is left), or remove its actors from a cluster it
    joined."""
    from mtia_cluster.distributed import launched as fl

    with fl.name_lock(fleet):
        info = fl.load_record(fleet)
        head = info.get("head")
        shared = [
            p.stem
            for p in (fl.home() / "fleets").glob("*.json")
            if p.stem != fleet and fl.load_record(p.stem).get("address") == info["address"]
        ]
        if head is not None and not shared:
            fl.stop_local_head(head)  # a stale record's head: nothing of it is alive
        elif info.get("started_local_head") and head is None:
            click.echo("(a record without process ids: stop its Ray head yourself)", err=True)
        elif head is None or fl.head_alive(head):
            _remove_actors(info)
        fl.record_path(fleet).unlink()
    click.echo(f"fleet {fleet} is down")


def _remove_actors(info: dict[str, Any]) -> None:
    """Kill the fleet's named actors on its cluster (nothing to do if it is unreachable)."""
    from mtia_cluster.distributed import launched as fl
    from mtia_cluster.distributed import ray_env
    from mtia_cluster.distributed.ray_env import connect, fleet_namespace
    from mtia_cluster.errors import UserError

    ns = fleet_namespace(info["name"])
    try:
        connect(info["address"], namespace=ns)
    except UserError:
        return  # the cluster is gone already
    for name in [fl.INFO_ACTOR] + [f"shard-{i:04d}" for i in range(info["shards"])]:
        with contextlib.suppress(ValueError):  # already gone
            ray_env.kill(ray_env.named_actor(name, ns), restart=False)
    ray_env.shutdown()
