"""A fault-injecting Ray transport, for tests only: it kills its own shard actors.

`KillingActors(shard, step)` kills shard `shard`'s actor process (Ray restarts it from its
checkpoint) just before the coordinator's `step`-th round of driving calls (`advance` per
window, `run_epoch` per region epoch; counted from 0). With `again=k` it also kills the
actor again the first k times it has come back while the transport recovers it, before the
calls since its checkpoint are resent (a death during recovery). With `oom=k` the first k
recoveries find the restarted actor killed again and get Ray's OutOfMemoryError, as when
Ray's memory monitor kills a worker on a node near its memory limit.
"""

from __future__ import annotations

from typing import Any

import ray

from mtia_cluster.distributed.ray_transport import ActorShard, RayActors
from mtia_cluster.distributed.transport import Args, ShardRef, ShardSpec

DRIVING = ("advance", "run_epoch")  # one round per window / per epoch


class KillingActors(RayActors):
    """`RayActors` that kills one shard at a given round, and again during its recovery."""

    def __init__(self, shard: int, step: int, again: int = 0, oom: int = 0) -> None:
        super().__init__()
        self.shard, self.step, self.again, self.oom = shard, step, again, oom
        self.rounds = 0  # driving rounds so far
        self.killed: list[str] = []  # shards killed, in order (the injected faults)
        self.refs: list[ShardRef] = []

    def start(self, specs: list[ShardSpec]) -> list[ShardRef]:
        self.refs = super().start(specs)
        return self.refs

    def call(self, shards: list[ShardRef], method: str, args: list[Args]) -> list[Any]:
        if method in DRIVING:
            if self.rounds == self.step:
                self._kill(self.refs[self.shard])
            self.rounds += 1
        return super().call(shards, method, args)

    def _await_restart(self, s: ActorShard) -> None:
        if self.oom > 0:  # the memory monitor killed it again: Ray reports OutOfMemoryError
            self.oom -= 1
            self._kill(s)
            raise ray.exceptions.OutOfMemoryError("1 worker(s) were killed (injected)")
        super()._await_restart(s)
        if self.again > 0:  # it came back: kill it again before the calls are resent
            self.again -= 1
            self._kill(s)

    def _kill(self, s: ShardRef) -> None:
        self.killed.append(s.name)
        ray.kill(s.handle, no_restart=False)
