"""Launched fleets: detached, named Ray actors that outlive the command that made them.

`launch` creates, in a namespace of the fleet's own, one `FleetInfo` actor (the resolved
scenario and the placement) and one `ShardHost` actor per shard; `replay --fleet` builds
fresh shard workers inside those processes for each run (so process start-up is paid once);
`status` reports them; `down` removes them. Without `--address`, `launch` starts a
persistent local Ray head bound to 127.0.0.1 and records its address, so later commands find
the fleet by name. Fleet records live in ``$MTIA_CLUSTER_HOME/fleets/<name>.json``
(default ``~/.mtia-cluster``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mtia_cluster.errors import UserError

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
        from mtia_cluster.distributed.region_worker import RegionWorker
        from mtia_cluster.distributed.worker import ShardWorker

        cls = RegionWorker if kind == "region" else ShardWorker
        self.worker = cls(*args)
        return self.worker.node()

    def call(self, method: str, *args: Any) -> Any:
        if self.worker is None:  # this host was restarted: its worker is gone
            from mtia_cluster.distributed.worker import StaleShard

            raise StaleShard("shard host restarted; its worker must be rebuilt")
        return getattr(self.worker, method)(*args)

    def ping(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())


def home() -> Path:
    return Path(os.environ.get("MTIA_CLUSTER_HOME", Path.home() / ".mtia-cluster"))


def record_path(name: str) -> Path:
    return home() / "fleets" / f"{name}.json"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UserError(
            "fleet names are lowercase letters, digits and '-'", field="--name", value=name
        )
    return name


def load_record(name: str) -> dict[str, Any]:
    path = record_path(check_name(name))
    if not path.exists():
        known = sorted(p.stem for p in (home() / "fleets").glob("*.json"))
        raise UserError(
            f"no launched fleet of that name (known: {', '.join(known) or 'none'})",
            field="FLEET",
            value=name,
        )
    return dict(json.loads(path.read_text()))


def save_record(name: str, record: dict[str, Any]) -> None:
    path = record_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def start_local_head(num_cpus: int | None) -> str:
    """`ray start --head` on 127.0.0.1 at a free port; returns its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    cmd = [
        ray_bin,
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    if num_cpus:
        cmd.append(f"--num-cpus={num_cpus}")
    # Stay on 127.0.0.1, with token authentication on.
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
        raise UserError(f"could not start a local Ray head: {tail[0]}", field="ray start")
    return f"127.0.0.1:{port}"


def stop_local_head(address: str) -> None:
    """Stop only the Ray head that `launch` started at `address` (never `ray stop`, which
    kills every Ray process of the machine, other users' and other runs' included).

    Its processes carry the GCS port on their command line; the workers exit with their
    raylet. SIGTERM first, SIGKILL for what is left after a few seconds."""
    port = address.rpartition(":")[2]
    marks = (f"127.0.0.1:{port}", f"gcs_server_port={port}")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in marks):
            pids.append(int(proc.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.1)


def describe(sim: Any, shards: int) -> dict[str, Any]:
    """Regions, racks, hosts and accelerators by generation of a fleet."""
    return {
        "regions": len(sim.regions),
        "racks": sim.fleet.racks,
        "hosts": sim.fleet.hosts,
        "accelerators": sim.fleet.accelerators,
        "accelerators_by_chip": dict(Counter(sim.fleet.acc_chip)),
        "shards": shards,
    }
