"""Ray: the one module of the package that imports it. Starting or joining Ray,
loopback-only and authenticated, with one-line failures; and the few actor operations the
Ray transport, launched fleets and the capacity search use (`actor`, `get`, `kill`, ...).

Which cluster (`resolve_address`): ``--address`` if given (``local`` forces an embedded
Ray), else ``RAY_ADDRESS`` (as ``ray.init`` reads it; ``ray job submit`` sets it for a job's
driver), else a new embedded Ray. Unlike ``ray.init()`` without an address, a Ray that
someone else started on this machine is never joined implicitly (``--address auto`` does).

The embedded Ray (`connect(None)`) binds and advertises 127.0.0.1 only (every process: GCS,
raylet, object manager, workers, agents), runs without the dashboard, with token
authentication on; the token is created, mode 0600, if the user has none (`ensure_token`).
A start that fails (under load Ray's raylet may miss its fixed 30 s registration window) is
retried once, then fails with one line (exit 1). Joining (`connect("host:port")`) first
probes the address with a short TCP connection; a dead address or a rejected token fails with
one line (exit 2) instead of Ray's 20 s of retry logs.

Only public Ray APIs and Ray's documented environment variables are used, except in
`_apply_ray_env` (the one place that refreshes what an already imported Ray has cached).
Ray reads its environment when it is imported, so it is imported only inside functions
(`_ray`), after `_apply_ray_env`; a test checks that no other module imports it.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mtia_cluster.distributed import procs
from mtia_cluster.errors import RunFailed, UserError

NAMESPACE_PREFIX = "mtia-cluster"
PROBE_TIMEOUT_S = 3.0
START_TIMEOUT_ENV = "MTIA_CLUSTER_RAY_START_TIMEOUT_S"
DEFAULT_START_TIMEOUT_S = 120
LOOPBACK = "127.0.0.1"
# Ray versions whose private names `_apply_ray_env` refreshes (tested with 2.60.0); token
# authentication (RAY_AUTH_MODE) needs 2.52. Keep in step with pyproject.toml.
RAY_TESTED = ((2, 52), (2, 60))
_AUTH_FAILED = ("InvalidAuthToken", "Unauthenticated")


def resolve_address(address: str | None) -> str | None:
    """The cluster to use: --address, else RAY_ADDRESS, else None (start an embedded Ray)."""
    if address is not None:
        return address
    return os.environ.get("RAY_ADDRESS") or None


def start_timeout_s() -> int:
    """Seconds Ray may take to start or register a process (MTIA_CLUSTER_RAY_START_TIMEOUT_S)."""
    text = os.environ.get(START_TIMEOUT_ENV, str(DEFAULT_START_TIMEOUT_S))
    if not text.isdigit() or int(text) < 1:
        raise UserError(
            "expected a whole number of seconds ≥ 1", field=START_TIMEOUT_ENV, value=text
        )
    return int(text)


def local_ray_env() -> dict[str, str]:
    """Environment for a Ray cluster on this machine only (embedded or `launch`'s head).

    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is Ray's single-machine mode: without it Ray
    rewrites 127.0.0.1 to the machine's outward address and its servers listen on every
    interface. Token authentication stays on. The start-up waits Ray lets us set get the
    configured timeout, and Ray's own background work that nothing here reads is turned
    down (`QUIET_RAY`); the user's own values win."""
    timeout = str(start_timeout_s())
    env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    for knob in ("RAY_gcs_server_port_wait_time_s", "RAY_worker_register_timeout_seconds"):
        env[knob] = os.environ.get(knob, timeout)
    for knob, value in QUIET_RAY.items():
        env[knob] = os.environ.get(knob, value)
    return env


# Ray's periodic work a replay never reads (its results, errors and progress come back as
# call replies), ~4 CPU-s less per minute of a session on the 2-core machine (docs/engine.md):
# every Ray process's metrics export (the shard actors' included), the dashboard agent's
# node and process statistics (every 5 s by default) and the log monitor's scan for new
# log files (every 0.1 s below 1,000 files by default; worker logs are not sent to drivers
# here, `_quiet`)
QUIET_RAY = {
    "RAY_enable_metrics_collection": "0",
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "LOG_NAME_UPDATE_INTERVAL_S": "5",
}


def token_path() -> Path | None:
    """Where Ray reads the token (None: it is given inline in RAY_AUTH_TOKEN)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(named) if named else Path.home() / ".ray" / "auth_token"


def ensure_token() -> Path | None:
    """Create Ray's authentication token if the user has none: 256 random bits, file mode
    0600 from the start (O_EXCL: never replaces a token, even one created concurrently).

    Ray itself would write it with the process umask (0644 usually: readable by every user
    of the machine). Returns the token file (None when the token is in RAY_AUTH_TOKEN)."""
    path = token_path()
    if path is None or path.exists():
        return path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def _ray_version_tested(version: str) -> bool:
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return RAY_TESTED[0] <= parts <= RAY_TESTED[1]


def _apply_ray_env(env: dict[str, str]) -> None:
    """Set Ray's environment variables for this process and the processes it starts.

    Ray reads them when it is imported; if it already was (a test, a notebook), refresh its
    cached copies: ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` (single-machine mode)
    and the core's config (token mode), exactly as Ray's own token set-up does. This is the
    one use of private Ray names, only for the versions in RAY_TESTED; with another version
    the caller's check (`_check_loopback`) refuses a node that is not on 127.0.0.1."""
    os.environ.update(env)
    ray = sys.modules.get("ray")
    if ray is None or not _ray_version_tested(ray.__version__):
        return
    from ray._private import ray_constants
    from ray._raylet import Config  # type: ignore[attr-defined]

    if "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in env:
        ray_constants.ENABLE_RAY_CLUSTER = env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] != "0"
    Config.initialize("")


@contextlib.contextmanager
def _ray_stderr(watch_auth: bool) -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 to a temporary file while Ray starts or connects (its C++
    client logs a line per retry); yield a reader of what was captured.

    With `watch_auth`, a rejected token interrupts the wait at once (KeyboardInterrupt in
    the main thread, turned into a UserError by the caller) instead of after Ray's ~20
    retries."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        done = threading.Event()

        def read() -> str:
            size = os.fstat(log.fileno()).st_size  # pread: fd 2 shares the file offset
            return os.pread(log.fileno(), size, 0).decode(errors="replace")

        def watch() -> None:
            while not done.wait(0.2):
                if any(m in read() for m in _AUTH_FAILED):
                    _thread.interrupt_main()
                    return

        watcher = None
        if watch_auth and threading.current_thread() is threading.main_thread():
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
        try:
            yield read
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _last_line(exc: BaseException, log: str) -> str:
    lines = [ln.strip() for ln in (str(exc) or log).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _quiet() -> dict[str, Any]:
    return {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}


def _check_loopback(ray: Any) -> None:
    """Refuse a local node that registered with another address than 127.0.0.1."""
    ip = ray.util.get_node_ip_address()
    if ip != LOOPBACK:
        ray.shutdown()
        raise RunFailed(
            f"Ray {ray.__version__} started on {ip}, not {LOOPBACK}; stopped it "
            f"(tested Ray versions: {RAY_TESTED[0]}..{RAY_TESTED[1]})"
        )


def _start_embedded(namespace: str, num_cpus: int | None) -> Any:
    """A new local Ray (loopback, token, no dashboard); one retry, then one line."""
    ensure_token()
    _apply_ray_env(local_ray_env())
    ray = _ray()
    failures = []
    for _attempt in range(2):
        before = procs.own_descendants()
        with _ray_stderr(watch_auth=False) as log:
            try:
                ctx = ray.init(
                    address="local",  # always a new instance, never someone else's
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    namespace=namespace,
                    **_quiet(),
                )
            except KeyboardInterrupt:
                _stop_started(ray, before)
                raise
            except Exception as exc:
                failures.append(_last_line(exc, log()))
                ray.shutdown()  # stops what the failed attempt had started
                continue
        _check_loopback(ray)
        return ctx
    raise RunFailed(
        f"the embedded Ray did not start (tried twice, {START_TIMEOUT_ENV}="
        f"{start_timeout_s()} s): {failures[-1]}"
    )


def _stop_started(ray: Any, before: set[procs.Proc]) -> None:
    """Ctrl-C during `ray.init`: `ray.shutdown()` stops only a node that finished starting,
    and the raylet's agents outlived a raylet stopped half-way (re-parented to init). Stop
    every process started since `before` (GCS, raylet, agents); nothing older is touched."""
    started = [p for p in procs.own_descendants() if p not in before]
    with contextlib.suppress(Exception):
        ray.shutdown()
    procs.terminate(started, grace_s=2.0)


def _probe(address: str, field: str) -> str:
    """Raise a UserError unless a TCP connection to `address` succeeds; returns the host."""
    rest = address.removeprefix("ray://")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise UserError("expected HOST:PORT (or ray://HOST:PORT)", field=field, value=address)
    try:
        with socket.create_connection((host, int(port_text)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(
            f"no Ray cluster answers there ({exc.strerror or exc})", field=field, value=address
        ) from None
    return host


def _join(address: str, namespace: str, field: str) -> Any:
    """Connect to a running cluster; a dead address or a bad token → one line, exit 2."""
    host = "" if address == "auto" else _probe(address, field)
    if host in (LOOPBACK, "localhost"):
        # a head on this machine (`launch`, `ray start --node-ip-address 127.0.0.1`): join
        # as a loopback node, presenting the token when the user has one
        env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        path = token_path()
        if "RAY_AUTH_MODE" not in os.environ and (path is None or path.exists()):
            env["RAY_AUTH_MODE"] = "token"
        _apply_ray_env(env)
    ray = _ray()
    rejected = "the cluster rejected the authentication token (RAY_AUTH_TOKEN, "
    rejected += "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
    with _ray_stderr(watch_auth=True) as log:
        try:
            return ray.init(address=address, namespace=namespace, **_quiet())
        except KeyboardInterrupt:
            if not any(m in log() for m in _AUTH_FAILED):
                raise
            problem = rejected
        except Exception as exc:
            # ray.init may give up before the watcher saw the rejection its C++ client logs
            problem = rejected
            if not _auth_failed(log):
                problem = f"could not join the Ray cluster: {_last_line(exc, log())}"
    ray.shutdown()
    raise UserError(problem, field=field, value=address)


def _auth_failed(log: Callable[[], str], wait_s: float = 1.0) -> bool:
    """Whether the captured client log shows a rejected token, waiting up to `wait_s` for
    the line (the C++ client writes it from its own thread)."""
    deadline = time.monotonic() + wait_s
    while True:
        if any(m in log() for m in _AUTH_FAILED):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _connected() -> bool:
    """Whether this process holds a Ray connection, without importing Ray: Ray reads its
    environment when imported, so the CLI imports it only after `_apply_ray_env`."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def connect(address: str | None, *, namespace: str, num_cpus: int | None = None) -> Any:
    """Start (no address, or ``local``) or join a Ray cluster; returns Ray's context."""
    if _connected():
        return _ray().get_runtime_context()
    field = "--address" if address is not None else "RAY_ADDRESS"
    address = resolve_address(address)
    if address in (None, "local"):
        return _start_embedded(namespace, num_cpus)
    return _join(address, namespace, field)


@contextlib.contextmanager
def ray_session(
    address: str | None, *, namespace: str, num_cpus: int | None = None
) -> Iterator[Any]:
    """Connect for the duration of a command; shut down only what we started."""
    started_here = not _connected()
    ctx = connect(address, namespace=namespace, num_cpus=num_cpus)
    try:
        yield ctx
    finally:
        if started_here:
            _ray().shutdown()


def fleet_namespace(fleet: str) -> str:
    """The Ray namespace holding one launched fleet's named actors."""
    return f"{NAMESPACE_PREFIX}-{fleet}"


# -- Ray itself and the actor operations the rest of the package uses ---------------------


def _ray() -> Any:
    """The `ray` module: its one import in the package. Call it only once this process's
    Ray environment is set (`connect`, or inside a Ray worker): Ray reads it on import."""
    import ray

    return ray


def actor(cls: type, **options: Any) -> Any:
    """`cls` as a Ray actor class with `options` (``ray.remote(cls).options(...)``)."""
    return _ray().remote(cls).options(**options)


def get(refs: Any, timeout: float | None = None) -> Any:
    """Wait for one object reference, or a list of them (``ray.get``)."""
    return _ray().get(refs, timeout=timeout)


def kill(handle: Any, *, restart: bool) -> None:
    """Kill an actor's process; with `restart`, Ray restarts it (within its max_restarts)."""
    _ray().kill(handle, no_restart=not restart)


def named_actor(name: str, namespace: str) -> Any:
    """A named actor (ValueError if there is none of that name)."""
    return _ray().get_actor(name, namespace=namespace)


def shutdown() -> None:
    """Disconnect this process from Ray (stops an embedded Ray it started)."""
    _ray().shutdown()


def alive_nodes() -> int:
    """Nodes of the cluster that are alive."""
    return len({n["NodeID"] for n in _ray().nodes() if n.get("Alive")})


def node_id() -> str:
    """The Ray node this process runs on ("local" when it holds no Ray connection)."""
    if not _connected():
        return "local"
    return str(_ray().get_runtime_context().get_node_id())


def actor_lost(exc: BaseException) -> bool:
    """The error says an actor died or is (for now) unavailable, including one Ray's memory
    monitor killed (OutOfMemoryError: the node near its memory limit; Ray restarts the
    actor like any other death, and a run whose restarts are spent fails in one line)."""
    errors = _ray().exceptions
    lost = errors.RayActorError | errors.ActorUnavailableError | errors.OutOfMemoryError
    return isinstance(exc, lost)


def actor_unavailable(exc: BaseException) -> bool:
    """The error says an actor is restarting (or unreachable for now)."""
    return isinstance(exc, _ray().exceptions.ActorUnavailableError)


def task_cause(exc: BaseException) -> BaseException | None:
    """The exception an actor method raised, when `exc` is Ray's wrapper of it."""
    errors = _ray().exceptions
    return exc.cause if isinstance(exc, errors.RayTaskError) else None


def cloudpickle() -> Any:
    """Ray's cloudpickle (shard states hold closures that plain pickle refuses)."""
    return _ray().cloudpickle


def parallel(fn: Callable[..., Any], *shared: Any, num_cpus: float = 1) -> Any:
    """When this process is connected to Ray: a function mapping a list of argument tuples
    to ``[fn(*shared, *args) for args in ...]`` computed as parallel Ray tasks (`shared`
    put once in the object store). None without a Ray connection."""
    if not _connected():
        return None
    ray = _ray()
    task = ray.remote(fn).options(num_cpus=num_cpus)
    refs = [ray.put(x) for x in shared]
    return lambda many: ray.get([task.remote(*refs, *args) for args in many])
