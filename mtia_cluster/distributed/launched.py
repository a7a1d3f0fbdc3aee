"""Launched fleets: detached, named Ray actors that outlive the command that made them.

`launch` creates, in a namespace of the fleet's own, one `FleetInfo` actor (the resolved
scenario and the placement) and one `ShardHost` actor per shard; `replay --fleet` builds
fresh shard workers inside those processes for each run (so process start-up is paid once);
`status` reports them; `down` removes them. Without an address (``--address`` or
``RAY_ADDRESS``), `launch` starts a persistent local Ray head bound to 127.0.0.1 with a Ray
temporary directory of its own, and records its address, that directory and its processes,
so later commands find the fleet by name and `down` stops exactly that head. Fleet records
live in ``$MTIA_CLUSTER_HOME/fleets/<name>.json`` (default ``~/.mtia-cluster``); a
``<name>.lock`` beside it makes `launch` and `down` of one name exclusive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtia_cluster.distributed import procs
from mtia_cluster.errors import RunFailed, UserError

INFO_ACTOR = "fleet-info"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class FleetInfo:
    """Holds a launched fleet's description (a plain dict) for later commands."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info

    def get(self) -> dict[str, Any]:
        return self.info


class ShardHost:
    """A long-lived process that hosts one shard worker per replay."""

    def __init__(self) -> None:
        self.worker: Any = None

    def start(self, kind: str, *args: Any) -> str:
        from mtia_cluster.distributed.transport import worker_class

        if self.worker is not None:  # a replay before this one failed or was abandoned
            self.worker.abandon()
        self.worker = worker_class(kind)(*args)
        return str(self.worker.node())

    def call(self, method: str, *args: Any) -> Any:
        if self.worker is None:  # this host was restarted: its worker is gone
            from mtia_cluster.distributed.worker import StaleShard

            raise StaleShard("shard host restarted; its worker must be rebuilt")
        return getattr(self.worker, method)(*args)

    def ping(self) -> str:
        """The node this host runs on (answers once a restarted host is up)."""
        from mtia_cluster.distributed.ray_env import node_id

        return node_id()


def home() -> Path:
    return Path(os.environ.get("MTIA_CLUSTER_HOME", Path.home() / ".mtia-cluster"))


def record_path(name: str) -> Path:
    return home() / "fleets" / f"{name}.json"


def check_name(name: str, field: str = "--name") -> str:
    if not NAME_RE.match(name):
        raise UserError(
            "fleet names are lowercase letters, digits and '-'", field=field, value=name
        )
    return name


def load_record(name: str, field: str = "FLEET") -> dict[str, Any]:
    """The record of a launched fleet; `field` names where the name came from (`FLEET` of
    `status`/`down`, `--fleet` of `replay`) in the refusal."""
    path = record_path(check_name(name, field))
    if not path.exists():
        known = sorted(p.stem for p in (home() / "fleets").glob("*.json"))
        raise UserError(
            f"no launched fleet of that name (known: {', '.join(known) or 'none'})",
            field=field,
            value=name,
        )
    return dict(json.loads(path.read_text()))


def fleet_address(name: str) -> str:
    """The Ray address of a launched fleet whose cluster is still there."""
    info = load_record(name, "--fleet")
    head = info.get("head")
    if info.get("started_local_head") and not (head and head_alive(head)):
        raise UserError(
            "the fleet's Ray head is gone; run `down` and `launch` again",
            field="--fleet",
            value=name,
        )
    return str(info["address"])


def save_record(name: str, record: dict[str, Any]) -> None:
    path = record_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


@contextlib.contextmanager
def name_lock(name: str) -> Iterator[None]:
    """Hold the fleet name for `launch` or `down`: an exclusive, non-blocking lock on
    ``fleets/<name>.lock`` (fcntl; the kernel drops it if the process dies, so a crashed
    launch never leaves the name taken). A second command on the same name is refused
    at once, even when both start at the same instant."""
    path = home() / "fleets" / f"{check_name(name)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                "another launch or down of that fleet is running", field="--name", value=name
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def start_local_head(num_cpus: int | None) -> dict[str, Any]:
    """`ray start --head` on 127.0.0.1 with a Ray temporary directory of its own.

    Returns what `down` needs to stop exactly this head: its address, that directory, the
    session directory and the (pid, start time) of every process naming it. Token
    authentication is on (the token is created, mode 0600, if absent). A start that fails
    is cleaned up and retried once."""
    from mtia_cluster.distributed.ray_env import ensure_token, local_ray_env

    ensure_token()
    env = {**os.environ, **local_ray_env()}
    error = "?"
    for _attempt in range(2):
        # short: Ray's socket paths under it must fit in 107 bytes
        temp_dir = tempfile.mkdtemp(prefix="mtia-ray-", dir="/tmp")
        port = _free_port()
        try:
            res = subprocess.run(
                _ray_start_cmd(temp_dir, port, num_cpus), capture_output=True, text=True, env=env
            )
        except BaseException:  # Ctrl-C: `ray start` is killed, what it started is not
            stop_local_head(_head(temp_dir, port))
            raise
        head = _head(temp_dir, port)
        if res.returncode == 0:
            return head
        error = ((res.stderr or res.stdout).strip().splitlines() or ["?"])[-1]
        stop_local_head(head)
    raise RunFailed(f"could not start a local Ray head (tried twice): {error}")


def _head(temp_dir: str, port: int) -> dict[str, Any]:
    return {
        "address": f"127.0.0.1:{port}",
        "temp_dir": temp_dir,
        "session_dir": str((Path(temp_dir) / "session_latest").resolve()),
        "pids": [[p.pid, p.start_ticks] for p in started_processes(temp_dir, port)],
    }


def started_processes(temp_dir: str, port: int) -> list[procs.Proc]:
    """The processes a head start just made: those naming its temporary directory, and
    Ray's client proxy, which names only the head's address and is re-parented to init
    when `ray start` exits (so it is not below any of the others). Recorded by (pid, start
    time) now, while the freshly chosen port can only be this head's."""
    proxy = [
        p
        for p in procs.with_cmdline_containing(f"--address=127.0.0.1:{port} ")
        if "ray.util.client.server" in procs.cmdline(p.pid)
    ]
    return procs.with_cmdline_containing(temp_dir) + proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_start_cmd(temp_dir: str, port: int, num_cpus: int | None) -> list[str]:
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    cmd = [
        ray_bin,
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        # their defaults (52365, 10001) are one port for every Ray on the machine
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
    ]
    return cmd + ([f"--num-cpus={num_cpus}"] if num_cpus else [])


def head_processes(head: dict[str, Any]) -> list[procs.Proc]:
    """The live processes of a head `launch` started: the recorded ones that are still
    the same processes (pid and start time), everything below them, and any process naming
    its private temporary directory. Never matched by port: a stale record whose port
    another Ray now uses finds nothing."""
    roots = [procs.Proc(pid, ticks) for pid, ticks in head.get("pids", [])]
    temp_dir = head.get("temp_dir")
    if temp_dir and Path(temp_dir).name.startswith("mtia-ray-"):
        roots += procs.with_cmdline_containing(temp_dir)
    return procs.descendants(roots)


def head_alive(head: dict[str, Any]) -> bool:
    return bool(head_processes(head))


def stop_local_head(head: dict[str, Any]) -> None:
    """Stop exactly the head `launch` started (never `ray stop`, which stops every Ray of
    the machine), wait until none of its processes is left, remove its temporary directory.

    SIGTERM, then SIGKILL after a grace period; processes that appear meanwhile (a worker
    started just before) are caught by a second pass."""
    for _pass in range(2):
        left = procs.terminate(head_processes(head))
        if left:
            raise RunFailed(f"Ray processes {[p.pid for p in left]} did not stop")
    temp_dir = Path(head.get("temp_dir") or "")
    if temp_dir.name.startswith("mtia-ray-") and temp_dir.is_dir():
        shutil.rmtree(temp_dir, ignore_errors=True)


def describe(sim: Any, shards: int) -> dict[str, Any]:
    """Regions, racks, hosts and accelerators by generation of a fleet."""
    return {
        "regions": len(sim.regions),
        "racks": sim.topology.racks,
        "hosts": sim.topology.hosts,
        "accelerators": sim.topology.accelerators,
        "accelerators_by_chip": dict(Counter(sim.topology.acc_chip)),
        "shards": shards,
    }
