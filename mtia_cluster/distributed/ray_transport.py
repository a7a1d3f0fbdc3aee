"""Shards in Ray actors, with recovery: `RayActors` and, on a launched fleet, `FleetHosts`.

Calls are numbered; the worker refuses a call whose number is not the next one it expects
(`StaleShard`), which is how a shard that Ray restarted from its checkpoint between two
calls is caught even though no call failed. The transport keeps each shard's calls since
its last checkpoint. A shard actor that dies is restarted by Ray, reloads its checkpoint
and is sent those calls again, so no request is lost or written twice; a death during that
recovery starts another one. After MAX_RESTARTS recoveries of one shard the run fails with
one line (RunFailed) and its directory stays marked incomplete.

Every Ray call goes through distributed/ray_env.py (the one module importing Ray).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mtia_cluster.distributed import ray_env
from mtia_cluster.distributed.transport import Args, ShardRef, ShardSpec, worker_class
from mtia_cluster.distributed.worker import StaleShard
from mtia_cluster.errors import RunFailed, UserError

RESTART_TIMEOUT_S = 120.0
MAX_RESTARTS = 3  # per shard actor and run (also Ray's max_restarts for the actor)


@dataclass
class ActorShard(ShardRef):
    """A shard in its own Ray actor (the actor is the worker)."""

    log: list[tuple[int, str, Args]] = field(default_factory=list)  # since its checkpoint
    next_seq: int = 0
    restarts: int = 0  # recoveries so far (budget: MAX_RESTARTS)

    def submit(self, method: str, args: Args) -> Any:
        """Log and send the next call (an object reference)."""
        seq = self.next_seq
        self.next_seq += 1
        self.log.append((seq, method, args))
        return self.send(seq, method, args)

    def send(self, seq: int, method: str, args: Args) -> Any:
        return self.handle.guarded.remote(seq, method, args)

    def ping(self) -> Any:
        """A call that answers once the (restarted) actor is up."""
        return self.handle.windows_done.remote()

    def rebuild(self) -> None:
        """After a restart: nothing to do, Ray rebuilt the worker from its checkpoint."""

    def next_call(self) -> Any:
        return self.handle.next_call.remote()


@dataclass
class HostedShard(ActorShard):
    """A shard worker inside a launched fleet's `ShardHost` actor (launched.py)."""

    def send(self, seq: int, method: str, args: Args) -> Any:
        return self.handle.call.remote("guarded", seq, method, args)

    def ping(self) -> Any:
        return self.handle.ping.remote()

    def rebuild(self) -> None:
        """A restarted host lost its worker: build it again (it reloads its checkpoint)."""
        ray_env.get(self.handle.start.remote(self.spec.kind, *self.spec.args))

    def next_call(self) -> Any:
        return self.handle.call.remote("next_call")


class RayActors:
    """One new Ray actor per shard (SPREAD over the nodes), restarted by Ray if it dies."""

    background_start = True  # actors build their workers while the coordinator goes on

    def __init__(self) -> None:
        self.restarts = 0

    def start(self, specs: list[ShardSpec]) -> list[ShardRef]:
        options = {"num_cpus": 0, "max_restarts": MAX_RESTARTS, "scheduling_strategy": "SPREAD"}
        return [
            ActorShard(s, ray_env.actor(worker_class(s.kind), **options).remote(*s.args))
            for s in specs
        ]

    def call(self, shards: list[ShardRef], method: str, args: list[Args]) -> list[Any]:
        mine = [_actor(s) for s in shards]
        refs = [s.submit(method, a) for s, a in zip(mine, args, strict=True)]
        out = []
        for s, ref in zip(mine, refs, strict=True):
            try:
                out.append(ray_env.get(ref))
            except Exception as exc:
                if not _lost(exc):
                    raise
                out.append(self._recover(s, exc))
        return out

    def checkpoint(self, shards: list[ShardRef]) -> None:
        self.call(shards, "checkpoint", [()] * len(shards))
        for s in shards:
            _actor(s).log.clear()  # the calls before are in the saved state

    def abort(self, shards: list[ShardRef]) -> None:
        for s in shards:
            ray_env.kill(s.handle, restart=False)

    def release(self, shards: list[ShardRef]) -> None:
        """Nothing of an actor runs in this process (a launched host abandons its old
        worker when the next run starts it)."""

    def nodes(self) -> int:
        return ray_env.alive_nodes()

    def _recover(self, s: ActorShard, exc: BaseException) -> Any:
        """The shard's actor died: once Ray has restarted it from its checkpoint, resend the
        calls logged since. A failure during this (the actor dying again) starts another
        recovery; each counts against the shard's budget (MAX_RESTARTS). Once it is spent,
        the run fails with one line (RunFailed, exit 1; the directory stays incomplete)."""
        while True:
            s.restarts += 1
            self.restarts += 1
            if s.restarts > MAX_RESTARTS:
                raise RunFailed(
                    f"shard {s.name} failed {s.restarts} times, more than its "
                    f"{MAX_RESTARTS} restarts: {_first_line(exc)}"
                ) from None
            try:
                return self._resume(s)
            except Exception as again:
                if not _lost(again):
                    raise
                exc = again

    def _resume(self, s: ActorShard) -> Any:
        """Resend what the restored state has not done. Calls before its checkpoint are done
        (a checkpoint whose reply was lost with the node is the only such call in the log)."""
        self._await_restart(s)
        s.rebuild()
        done = ray_env.get(s.next_call())
        result = None
        for seq, method, a in s.log:
            if seq >= done:
                result = ray_env.get(s.send(seq, method, a))
        return result

    def _await_restart(self, s: ActorShard) -> None:
        """Wait until the restarted actor answers (it reloads its checkpoint first)."""
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:
            try:
                ray_env.get(s.ping())
                return
            except Exception as exc:
                if not ray_env.actor_unavailable(exc):
                    raise
                if time.monotonic() > deadline:
                    raise RunFailed(
                        f"shard {s.name} did not come back within {RESTART_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.2)


class FleetHosts(RayActors):
    """The shards of a launched fleet: a fresh worker per run in each named host actor
    (process start-up paid once, at `launch`)."""

    background_start = False  # start() waits for the hosts to build their workers

    def __init__(self, fleet: str) -> None:
        super().__init__()
        self.fleet = fleet

    def start(self, specs: list[ShardSpec]) -> list[ShardRef]:
        namespace = ray_env.fleet_namespace(self.fleet)
        try:
            hosts = [ray_env.named_actor(s.name, namespace) for s in specs]
        except ValueError:
            raise UserError(
                "the fleet's actors are gone (Ray restarted?); run `down` and `launch` again",
                field="--fleet",
                value=self.fleet,
            ) from None
        ray_env.get([h.start.remote(s.kind, *s.args) for h, s in zip(hosts, specs, strict=True)])
        return [HostedShard(s, h) for h, s in zip(hosts, specs, strict=True)]


def _actor(s: ShardRef) -> ActorShard:
    if not isinstance(s, ActorShard):
        raise TypeError(f"{s.name} was not started by a Ray transport")
    return s


def _lost(exc: BaseException) -> bool:
    """An error that means the shard's actor process died or restarted (a recoverable
    state): the actor died or is unavailable, or it refused a call it had lost (StaleShard)."""
    return ray_env.actor_lost(exc) or isinstance(ray_env.task_cause(exc), StaleShard)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
