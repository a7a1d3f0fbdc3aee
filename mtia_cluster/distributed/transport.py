"""How the coordinator reaches its shards: the `Transport` protocol and the in-process one.

A replay is a composition (runner.py): a transport starts the shard workers and carries the
coordinator's calls to them; a driver (drivers.py) decides which calls to make. Transports:

- `InProcess` (``address="inprocess"``): the workers are plain objects of this process
  (tests, benchmarks' baseline); nothing can die, so nothing is logged or recovered.
- `RayActors` (ray_transport.py): one Ray actor per shard; calls are numbered, logged since
  the last checkpoint, and resent to a shard Ray restarted (recovery, `RunFailed` past the
  budget).
- `FleetHosts` (ray_transport.py): the same on a launched fleet's long-lived host actors.

Tests add a fault-injecting Ray transport (tests/distributed/faults.py) to drive recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mtia_cluster.distributed.region_worker import RegionWorker
from mtia_cluster.distributed.timing import Timeline
from mtia_cluster.distributed.worker import ShardWorker

Args = tuple[Any, ...]


def worker_class(kind: str) -> type[ShardWorker]:
    """The worker of a shard kind: "region" owns whole regions (routes and reads its trace
    slice itself); "shard" holds cells only (the coordinator routes for it)."""
    return RegionWorker if kind == "region" else ShardWorker


@dataclass(frozen=True)
class ShardSpec:
    """What a transport needs to build one shard: its kind, the worker's constructor
    arguments (scenario, file, cell ids, run target, name[, trace path, regions]), cells."""

    kind: str
    args: Args
    cells: np.ndarray

    @property
    def name(self) -> str:
        return str(self.args[4])

    def build(self) -> ShardWorker:
        return worker_class(self.kind)(*self.args)


@dataclass
class ShardRef:
    """The coordinator's handle on one started shard (a worker object, or an actor)."""

    spec: ShardSpec
    handle: Any

    @property
    def name(self) -> str:
        return self.spec.name


class Transport(Protocol):
    """Starts shard workers and runs the same method on several of them."""

    restarts: int  # shards restarted from their checkpoint during the run
    background_start: bool  # start() returns while the workers are still being built

    def start(self, specs: list[ShardSpec]) -> list[ShardRef]: ...

    def call(self, shards: list[ShardRef], method: str, args: list[Args]) -> list[Any]:
        """`method(*args[i])` on `shards[i]`, in parallel where possible; the replies."""
        ...

    def checkpoint(self, shards: list[ShardRef]) -> None:
        """Each shard commits its parts and saves its state (calls before are done)."""
        ...

    def abort(self, shards: list[ShardRef]) -> None:
        """Stop started shards of a run that will not go on (bad input)."""
        ...

    def release(self, shards: list[ShardRef]) -> None:
        """A run that failed or was interrupted: stop what its shards run in this process
        (their writer threads) before the results directory is removed."""
        ...

    def nodes(self) -> int:
        """Machines the run's shards could use (the manifest's `nodes`)."""
        ...


class InProcess:
    """Shard workers as plain objects of this process, called one after another."""

    restarts = 0
    background_start = False

    def start(self, specs: list[ShardSpec]) -> list[ShardRef]:
        return [ShardRef(spec, spec.build()) for spec in specs]

    def call(self, shards: list[ShardRef], method: str, args: list[Args]) -> list[Any]:
        return [getattr(s.handle, method)(*a) for s, a in zip(shards, args, strict=True)]

    def checkpoint(self, shards: list[ShardRef]) -> None:
        self.call(shards, "checkpoint", [()] * len(shards))

    def abort(self, shards: list[ShardRef]) -> None:
        """Stop the workers' writer threads (nothing else runs on its own)."""
        self.release(shards)

    def release(self, shards: list[ShardRef]) -> None:
        for s in shards:
            s.handle.abandon()

    def nodes(self) -> int:
        return 1


@dataclass
class Shards:
    """The started shards of one run and the transport that reaches them; each round of
    calls is one ``calls.<method>`` span of the coordinator's timeline (timing.py)."""

    transport: Transport
    refs: list[ShardRef]
    timeline: Timeline

    def call(self, method: str, args: list[Args], refs: list[ShardRef] | None = None) -> list[Any]:
        """`method(*args[i])` on `refs[i]` (default: every shard)."""
        with self.timeline.span(f"calls.{method}"):
            return self.transport.call(self.refs if refs is None else refs, method, args)

    def each(self, method: str, *args: Any) -> list[Any]:
        """The same call on every shard."""
        return self.call(method, [args] * len(self.refs))

    def checkpoint(self) -> None:
        with self.timeline.span("calls.checkpoint"):
            self.transport.checkpoint(self.refs)
