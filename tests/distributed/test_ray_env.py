"""Ray set-up without starting Ray: token file, address precedence, the one private-API
function, the fleet name lock, process identities and `python -m mtia_cluster`."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest

from mtia_cluster.distributed import launched as fl
from mtia_cluster.distributed import procs, ray_env
from mtia_cluster.errors import RunFailed, UserError

from .conftest import REPO


def unset_after(monkeypatch, names: list[str]) -> None:
    """Unset the variables now and give them back their values (or absence) after the test,
    whatever the code under test sets (monkeypatch.delenv alone forgets absent ones)."""
    for name in names:
        monkeypatch.setenv(name, "placeholder")  # records the original value or absence
        monkeypatch.delenv(name)


def test_token_is_created_0600_once_and_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    old = os.umask(0o022)  # a permissive umask must not matter
    try:
        path = ray_env.ensure_token()
    finally:
        os.umask(old)
    assert path == tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert ray_env.ensure_token() == path and path.read_text() == token  # kept

    named = tmp_path / "elsewhere" / "tok"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert ray_env.ensure_token() == named and stat.S_IMODE(named.stat().st_mode) == 0o600
    monkeypatch.setenv("RAY_AUTH_TOKEN", "inline")
    assert ray_env.ensure_token() is None  # Ray uses the inline token; no file made


def test_address_precedence(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_env.resolve_address(None) is None  # embedded
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_env.resolve_address(None) == "10.0.0.1:6379"  # as ray.init reads it
    assert ray_env.resolve_address("local") == "local"  # --address wins
    assert ray_env.resolve_address("auto") == "auto"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_ray_address_is_one_line_naming_the_variable(monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this test process already holds a Ray connection")
    address = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(UserError) as err:
        ray_env.connect(None, namespace="x")
    text = str(err.value)
    assert text.startswith("RAY_ADDRESS:") and address in text and "\n" not in text
    with pytest.raises(UserError, match=r"^--address:"):
        ray_env.connect(address, namespace="x")


def test_start_timeout_is_configurable_and_checked(monkeypatch):
    # an embedded Ray started earlier in this process exported the knobs (os.environ)
    monkeypatch.delenv("RAY_gcs_server_port_wait_time_s", raising=False)
    monkeypatch.delenv("RAY_worker_register_timeout_seconds", raising=False)
    monkeypatch.setenv(ray_env.START_TIMEOUT_ENV, "300")
    env = ray_env.local_ray_env()
    assert env["RAY_gcs_server_port_wait_time_s"] == "300"
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and env["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "7")  # the user's own Ray value wins
    assert ray_env.local_ray_env()["RAY_gcs_server_port_wait_time_s"] == "7"
    monkeypatch.setenv(ray_env.START_TIMEOUT_ENV, "0")
    with pytest.raises(UserError, match=ray_env.START_TIMEOUT_ENV):
        ray_env.local_ray_env()


def test_private_ray_refresh_is_version_checked_and_works(monkeypatch):
    """`_apply_ray_env` is the one use of private Ray names: it runs only for the tested
    versions, and then an already imported Ray resolves this node to 127.0.0.1."""
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants, services

    assert ray_env._ray_version_tested("2.52.0") and ray_env._ray_version_tested("2.60.1")
    assert not ray_env._ray_version_tested("2.51.0")
    assert not ray_env._ray_version_tested("2.61.0")
    assert ray_env._ray_version_tested(ray.__version__), "pyproject's ray range is untested"
    if ray.is_initialized():
        pytest.skip("this test process already holds a Ray connection")
    unset_after(monkeypatch, ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"])
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_env._apply_ray_env({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert ray_constants.ENABLE_RAY_CLUSTER is False
    assert services.get_node_ip_address() == "127.0.0.1"


def test_pyproject_ray_range_matches_the_tested_versions():
    text = (REPO / "pyproject.toml").read_text()
    lo, hi = ray_env.RAY_TESTED
    assert f'"ray>={lo[0]}.{lo[1]},<{hi[0]}.{hi[1] + 1}"' in text


def test_name_lock_refuses_a_second_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("MTIA_CLUSTER_HOME", str(tmp_path))
    with fl.name_lock("f1"):
        with pytest.raises(UserError, match="another launch or down"), fl.name_lock("f1"):
            pass
        with fl.name_lock("f2"):  # other names are free
            pass
    with fl.name_lock("f1"):  # released
        pass


def test_a_pid_is_trusted_only_with_its_start_time():
    me = procs.identify(os.getpid())
    assert me is not None and me.alive()
    assert not procs.Proc(me.pid, me.start_ticks + 1).alive()  # a reused pid is not ours
    head = {"temp_dir": "/tmp/mtia-ray-never-made", "pids": [[me.pid, me.start_ticks + 1]]}
    assert fl.head_processes(head) == []
    fl.stop_local_head(head)  # a stale record: signals nothing (we are still here)
    assert me.alive()


def test_stop_waits_until_the_tree_is_gone(tmp_path):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess,time; subprocess.Popen(['sleep','60']); time.sleep(60)",
        ]
    )
    try:
        root = None
        while root is None or len(procs.descendants([root])) < 2:
            root = procs.identify(child.pid)
        tree = procs.descendants([root])
        fl.stop_local_head({"pids": [[root.pid, root.start_ticks]]})
        assert not any(p.alive() for p in tree)  # the grandchild too
    finally:
        child.kill()
        child.wait()


def test_listening_sockets_of_a_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        me = procs.identify(os.getpid())
        assert me is not None
        assert (os.getpid(), "tcp", "127.0.0.1", port) in procs.listening_sockets([me])


def test_python_dash_m_runs_the_cli():
    res = subprocess.run(
        [sys.executable, "-m", "mtia_cluster", "--version"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and res.stdout.startswith("mtia-cluster, version"), res


def test_run_failure_is_one_line_exit_1(runner, monkeypatch, tmp_path):
    from mtia_cluster.cli import replay as replay_cmd
    from mtia_cluster.cli.main import cli

    def failing(*args, **kwargs):
        raise RunFailed("shard shard-0001 failed 4 times, more than its 3 restarts: X")

    monkeypatch.setattr(replay_cmd, "run_replay", failing)
    res = runner.invoke(cli, ["replay", "c.yaml", "--trace", "t", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.output == "error: shard shard-0001 failed 4 times, more than its 3 restarts: X\n"


def test_embedded_start_is_retried_once_then_one_line(tmp_path, monkeypatch):
    """Under load Ray's raylet can miss its fixed 30 s registration window: the start is
    retried once (after cleaning up), and a second failure is one line, exit 1."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this test process already holds a Ray connection")
    monkeypatch.setenv("HOME", str(tmp_path))
    # Ray's core config is process-wide and outlives monkeypatch: leave it untouched here
    # (`_apply_ray_env` has its own test above)
    monkeypatch.setattr(ray_env, "_apply_ray_env", lambda env: None)
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        raise Exception("The current node timed out during startup. This could happen …")

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(RunFailed) as failed:
        ray_env.connect(None, namespace="x")
    assert len(calls) == 2 and calls[0]["address"] == "local"
    assert calls[0]["include_dashboard"] is False
    text = str(failed.value)
    assert "\n" not in text and "tried twice" in text and "timed out during startup" in text


def test_ctrl_c_while_ray_starts_leaves_no_process(tmp_path, monkeypatch):
    """Ctrl-C during `ray.init` (the GCS and raylet up, the raylet's agents starting) used to
    leave the agents running, re-parented to init: `ray.shutdown()` only knows a node that
    finished starting. Every process started since the start began is stopped; processes
    that were there before are left alone."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this test process already holds a Ray connection")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(ray_env, "_apply_ray_env", lambda env: None)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    earlier = subprocess.Popen(sleeper)  # not Ray's: must survive
    started: list[procs.Proc] = []

    def init(**kwargs):
        # a "raylet" with an "agent" below it, as Ray's start leaves them, then Ctrl-C
        spawn = "import subprocess,sys,time; subprocess.Popen(sys.argv[1:]); time.sleep(60)"
        raylet = subprocess.Popen([sys.executable, "-c", spawn, *sleeper])
        root = procs.identify(raylet.pid)
        while root is None or len(procs.descendants([root])) < 2:
            root = procs.identify(raylet.pid)
        started.extend(procs.descendants([root]))
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", init)
    try:
        with pytest.raises(KeyboardInterrupt):
            ray_env.connect(None, namespace="x")
        assert len(started) == 2 and not any(p.alive() for p in started)
        assert earlier.poll() is None
    finally:
        earlier.kill()
        earlier.wait()
        procs.terminate(started, grace_s=0)


def test_ctrl_c_during_launch_head_start_stops_what_it_started(tmp_path, monkeypatch):
    """Ctrl-C while `launch` runs `ray start --head` used to leave the head's GCS, raylet,
    dashboard and client proxy running (re-parented to init) with no fleet record, so
    `down` could not find them. The processes naming the head's temporary directory are
    stopped and the directory is removed."""
    monkeypatch.setenv("HOME", str(tmp_path))
    started: list[procs.Proc] = []
    dirs: list[str] = []

    def run(cmd, **kwargs):
        temp_dir = next(a.split("=", 1)[1] for a in cmd if a.startswith("--temp-dir="))
        dirs.append(temp_dir)
        # a "gcs_server" naming the head's directory, detached from `ray start`
        gcs = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", f"--log_dir={temp_dir}/x"],
            start_new_session=True,
        )
        proc = procs.identify(gcs.pid)
        assert proc is not None
        started.append(proc)
        raise KeyboardInterrupt

    monkeypatch.setattr(fl.subprocess, "run", run)
    try:
        with pytest.raises(KeyboardInterrupt):
            fl.start_local_head(None)
        assert len(started) == 1 and not started[0].alive()
        assert not os.path.exists(dirs[0])
    finally:
        procs.terminate(started, grace_s=0)


def test_a_rejection_logged_after_init_gave_up_is_still_named_the_token():
    """ray.init can fail ("Failed to connect") before the watcher read the client's
    Unauthenticated line; the join waits briefly for it so the error names the token."""
    import time

    start = time.monotonic()

    def late_log() -> str:  # the C++ client's line arrives 0.2 s after init gave up
        return "... Unauthenticated ..." if time.monotonic() - start > 0.2 else ""

    assert ray_env._auth_failed(late_log, wait_s=1.0)
    assert not ray_env._auth_failed(lambda: "connection refused", wait_s=0.1)
