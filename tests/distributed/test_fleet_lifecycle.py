"""launch -> status -> replay --fleet -> down, each a `python -m mtia_cluster` process, on a
fresh HOME (no Ray token yet) and a local Ray head of the test's own.

One head serves every check: two raced launches of one name (exactly one wins), the token
created 0600, the head's sockets on 127.0.0.1 only, a rejected token (one line, exit 2), a
stale record whose port is now this head's (its `down` leaves the head alive), and `down`
stopping every process of the head."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mtia_cluster.distributed import launched as fl
from mtia_cluster.distributed import procs
from mtia_cluster.distributed.runner import ReplayOptions, replay

from .conftest import REPO, SCENARIO, assert_same_run

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

RAY_VARS = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")


def clean_env(tmp_path: Path) -> dict[str, str]:
    """A fresh machine for Ray: empty HOME, no Ray variables, this checkout first."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARS}
    env.update(HOME=str(tmp_path / "home"), MTIA_CLUSTER_HOME=str(tmp_path / "mc"))
    env["PYTHONPATH"] = str(REPO)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mtia_cluster", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    p = cli(args, env)
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def test_fleet_lifecycle(short_trace, tmp_path, monkeypatch):
    env = clean_env(tmp_path)
    monkeypatch.setenv("MTIA_CLUSTER_HOME", env["MTIA_CLUSTER_HOME"])  # for fl.record_path
    raced = [cli(["launch", str(SCENARIO), "--name", "t1", "--json"], env) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in raced]
    head, alive = None, []
    try:
        assert sorted(r[0] for r in results) == [0, 2], results
        won = next(r for r in results if r[0] == 0)
        lost = next(r for r in results if r[0] == 2)
        assert lost[2].count("\n") == 1 and "--name" in lost[2], lost[2]  # one line
        launched = json.loads(won[1])
        assert launched["accelerators"] == 160 and launched["shards"] == 2
        token = tmp_path / "home" / ".ray" / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600  # created by launch, never 0644

        record = json.loads(fl.record_path("t1").read_text())
        head = record["head"]
        alive = procs.descendants([procs.Proc(p, t) for p, t in head["pids"]])
        assert len(alive) >= 3  # gcs_server, raylet, their agents and workers
        sockets = procs.listening_sockets(fl.head_processes(head))
        assert sockets and {s[2] for s in sockets} == {"127.0.0.1"}, sockets

        code, out, _ = run(["status", "--json"], env)
        assert code == 0 and [(s["name"], s["shards_alive"]) for s in json.loads(out)] == [
            ("t1", 2)
        ]
        out_dir = tmp_path / "on-fleet"
        code, _, err = run(
            ["replay", "--fleet", "t1", "--trace", str(short_trace), "-o", str(out_dir), "--json"],
            env,
        )
        assert code == 0, err

        wrong = {**env, "RAY_AUTH_TOKEN": "0" * 64}
        code, _, err = run(
            [
                *("replay", str(SCENARIO), "--trace", str(short_trace)),
                *("-o", str(tmp_path / "x"), "--address", record["address"]),
            ],
            wrong,
        )
        assert code == 2 and err.count("\n") == 1 and "token" in err, err

        # A stale record of an earlier head whose port this head now uses, and whose pids
        # this head's processes now carry (other start times): its `down` must not touch us.
        stale_head = {
            **head,
            "temp_dir": "/tmp/mtia-ray-long-gone",
            "pids": [[p, t + 1] for p, t in head["pids"]],
        }
        stale = {**record, "name": "old", "head": stale_head}
        fl.record_path("old").write_text(json.dumps(stale))
        code, _, err = run(["down", "old"], env)
        assert code == 0, err
        assert not fl.record_path("old").exists()
        assert all(p.alive() for p in alive)  # no process of the live head was signalled
    finally:
        code, _, err = run(["down", "t1"], env)
    assert code == 0, err
    assert head is not None
    assert not fl.head_processes(head)  # nothing left running, agents included
    # nor anything naming the head's address (Ray's client proxy is re-parented to init)
    assert not procs.with_cmdline_containing(f"--address={head['address']} ")
    assert not any(p.alive() for p in alive)
    assert not Path(head["temp_dir"]).exists()
    code, out, _ = run(["status", "--json"], env)
    assert json.loads(out) == []
    reference = replay(SCENARIO, short_trace, tmp_path / "ref", ReplayOptions(address="inprocess"))
    assert_same_run(reference, out_dir)


def test_down_unknown_fleet(runner, tmp_path, monkeypatch):
    from mtia_cluster.cli.main import cli as main_cli

    monkeypatch.setenv("MTIA_CLUSTER_HOME", str(tmp_path / "home"))
    res = runner.invoke(main_cli, ["down", "nope"])
    assert res.exit_code == 2 and "no launched fleet" in res.output
