"""The embedded Ray listens on 127.0.0.1 only, with a 0600 token made on a fresh HOME; a
`ray start --head --node-ip-address 127.0.0.1` head running ops/README's `ray job submit`
command (`python -m mtia_cluster replay`, RAY_ADDRESS from the job) gives the same results.

Each Ray here is the test's own: the embedded one lives in a child process (its sockets are
those of that process and its descendants); the head has a temporary directory and ports of
its own and is stopped by its processes, never with `ray stop`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mtia_cluster.distributed import launched as fl
from mtia_cluster.distributed import procs

from .conftest import REPO, SCENARIO, assert_same_run
from .test_fleet_lifecycle import clean_env

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

# In a child process: an embedded replay (region actors) that lists, while its shards run,
# every socket its Ray processes (itself and all its descendants) listen on.
EMBEDDED = """
import json, os, sys
from mtia_cluster.distributed import procs
from mtia_cluster.distributed.ray_env import ray_session
from mtia_cluster.distributed.runner import ReplayOptions, replay

seen = []
def progress(done, total, t_ns):
    if not seen:
        mine = procs.descendants([procs.identify(os.getpid())])
        for s in procs.listening_sockets(mine):
            words = procs.cmdline(s[0]).split()
            seen.append((*s, " ".join([words[0].rsplit("/", 1)[-1], *words[1:3]])[:120]))
with ray_session(None, namespace="loopback-test"):
    import ray
    node_ip = ray.util.get_node_ip_address()
    replay(sys.argv[1], sys.argv[2], sys.argv[3], ReplayOptions(), progress)
print(json.dumps({"node_ip": node_ip, "sockets": seen}))
"""


@pytest.fixture(scope="module")
def embedded(short_trace, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embedded")
    env = clean_env(tmp)
    res = subprocess.run(
        [sys.executable, "-c", EMBEDDED, str(SCENARIO), str(short_trace), str(tmp / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp, json.loads(res.stdout.strip().splitlines()[-1])


def test_embedded_ray_listens_on_loopback_only(embedded):
    tmp, seen = embedded
    assert seen["node_ip"] == "127.0.0.1"
    sockets = seen["sockets"]
    names = " ".join(s[4] for s in sockets)
    for process in ("gcs_server", "raylet", "RegionWorker", "RuntimeEnvAgent"):
        assert process in names, names  # the listing covers every kind of Ray process
    assert {s[2] for s in sockets} == {"127.0.0.1"}, sockets
    token = tmp / "home" / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_ray_job_submit_equals_embedded(embedded, short_trace, tmp_path):
    """ops/README.md: `ray start --head --node-ip-address 127.0.0.1`, then
    `ray job submit --working-dir . -- python -m mtia_cluster replay ...` (no --address:
    the job's RAY_ADDRESS is honoured)."""
    env = clean_env(tmp_path)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env["PATH"]  # the job's `python` is this one
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else `ray start` advertises the outward IP
    ray_bin = shutil.which("ray", path=venv_bin) or "ray"
    temp_dir = tempfile.mkdtemp(prefix="mtia-ray-", dir="/tmp")
    gcs, dashboard, agent, agent_grpc, env_agent, metrics, client = _free_ports(7)
    head = {"temp_dir": temp_dir, "pids": []}
    out = tmp_path / "job-run"
    try:
        (tmp_path / "home" / ".ray").mkdir(parents=True)
        fd = os.open(tmp_path / "home" / ".ray" / "auth_token", os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"1" * 64)  # the head's and the job submitter's token
        os.close(fd)
        start = subprocess.run(
            [
                *(ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", f"--port={gcs}"),
                *(f"--temp-dir={temp_dir}", "--dashboard-host=127.0.0.1"),
                *(f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent}"),
                *(f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}"),
                *(f"--runtime-env-agent-port={env_agent}", "--disable-usage-stats"),
                f"--ray-client-server-port={client}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert start.returncode == 0, start.stderr[-2000:]
        # what `down` would stop: its processes, Ray's client proxy included
        head["pids"] = [[p.pid, p.start_ticks] for p in fl.started_processes(temp_dir, gcs)]
        sockets = procs.listening_sockets(fl.head_processes(head))
        assert sockets and {s[2] for s in sockets} == {"127.0.0.1"}, sockets
        for _attempt in range(20):  # the Jobs API answers before its agent has registered
            job = subprocess.run(
                [
                    *(ray_bin, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}"),
                    *("--working-dir", str(REPO), "--", "python", "-m", "mtia_cluster", "replay"),
                    *(str(SCENARIO.relative_to(REPO)), "--trace", str(short_trace), "-o", str(out)),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if "No available agent" not in job.stderr:
                break
            time.sleep(3)
        assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    finally:
        fl.stop_local_head(head)
    assert not fl.head_processes(head)
    assert not procs.with_cmdline_containing(f"--address=127.0.0.1:{gcs} ")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["nodes"] == 1 and manifest["shards"] == 2
    tmp, _ = embedded
    assert_same_run(tmp / "run", out)
