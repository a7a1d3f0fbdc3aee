"""Starting or joining Ray, with failures a user can act on.

`connect(None)` starts an embedded local Ray bound to 127.0.0.1 (the default for every
command); `connect("host:port")` joins an existing cluster after checking, with a short TCP
probe, that something answers there: `ray.init` itself waits minutes on a dead address.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from mtia_cluster.errors import UserError

NAMESPACE_PREFIX = "mtia-cluster"
PROBE_TIMEOUT_S = 3.0


def _probe(address: str) -> None:
    """Raise a UserError unless a TCP connection to `address` (host:port) succeeds."""
    host, sep, port_text = address.rpartition(":")
    if address.startswith("ray://"):
        host, _, port_text = address[len("ray://") :].rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise UserError("expected HOST:PORT (or ray://HOST:PORT)", field="--address", value=address)
    try:
        with socket.create_connection((host, int(port_text)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(
            f"no Ray cluster answers there ({exc.strerror or exc})",
            field="--address",
            value=address,
        ) from None


def connect(address: str | None, *, namespace: str, num_cpus: int | None = None) -> Any:
    """Start (address None) or join a Ray cluster; returns Ray's context object."""
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    quiet: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "configure_logging": True,
    }
    if address in (None, "local"):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        return ray.init(
            # "local": always a new embedded instance (with None Ray joins a head that
            # `launch` or `ray start` left running on this machine, refusing num_cpus)
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            namespace=namespace,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
    if address != "auto":
        _probe(address)
        host = address.removeprefix("ray://").rpartition(":")[0]
        if host in ("127.0.0.1", "localhost"):  # join as a loopback node, as the head is
            loopback_only()
            quiet["_node_ip_address"] = "127.0.0.1"
    return ray.init(address=address, namespace=namespace, **quiet)


def loopback_only() -> None:
    """Keep a single-machine Ray on 127.0.0.1.

    Ray rewrites a loopback address to the machine's outward IP unless its single-machine
    mode is on (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); set it for this process (Ray reads
    the constant at call time) and for the processes it starts (through the environment).
    Only for clusters on loopback: a driver joining a remote cluster must not do this (its
    token comes from the user's environment, see ops/README.md).
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    # A head started by `launch` uses token authentication (~/.ray/auth_token); a driver
    # joining an existing cluster only presents the token when token mode is on.
    from ray._private.authentication import authentication_token_setup as auth

    auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


@contextlib.contextmanager
def ray_session(
    address: str | None, *, namespace: str, num_cpus: int | None = None
) -> Iterator[Any]:
    """Connect for the duration of a command; shut down only what we started."""
    import ray

    started_here = not ray.is_initialized()
    ctx = connect(address, namespace=namespace, num_cpus=num_cpus)
    try:
        yield ctx
    finally:
        if started_here:
            ray.shutdown()


def fleet_namespace(fleet: str) -> str:
    """The Ray namespace holding one launched fleet's named actors."""
    return f"{NAMESPACE_PREFIX}-{fleet}"
