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
            num_cpus=num_cpus,
            include_dashboard=False,
            namespace=namespace,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
    if address != "auto":
        _probe(address)
    return ray.init(address=address, namespace=namespace, **quiet)


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
