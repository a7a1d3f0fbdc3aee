"""Where a replay's wall time goes: named spans from the coordinator and every shard.

A span records wall time (``time.time()``: one clock for every process of a machine; on
several nodes the clocks are only as close as NTP keeps them, so cross-process gaps are
estimates there) and the CPU time its process used meanwhile (``time.process_time()``, all
threads), or, on a timeline with ``thread_cpu`` (a shard worker, whose writes run on a
background thread: ``writer.*`` spans), the CPU time of the thread that ran the span. CPU
next to wall shows waiting: on a shared 2-core machine a shard whose phase took 3 s of wall
but 1.5 s of CPU was waiting for a core, not working. The coordinator asks each
shard for its spans before closing it (one small call per shard); ``breakdown()`` turns
them into the lines the benchmark prints.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

Span = tuple[str, str, float, float, float]  # who, what, start s, end s, CPU s
CALL = "call."  # a shard's span around one coordinator call (worker.guarded)
ROUND = "calls."  # the coordinator's span around one parallel round of calls


@dataclass
class Timeline:
    """Spans recorded by one process (or merged from several)."""

    who: str = "coordinator"
    spans: list[Span] = field(default_factory=list)
    thread_cpu: bool = False  # spans measure their thread's CPU, not the process's

    @contextmanager
    def span(self, what: str) -> Iterator[None]:
        """Record how long the block takes under `what` (list appends: thread-safe)."""
        clock = time.thread_time if self.thread_cpu else time.process_time
        start, cpu = time.time(), clock()
        try:
            yield
        finally:
            self.spans.append((self.who, what, start, time.time(), clock() - cpu))

    def mark(self, what: str, start: float) -> None:
        """Record a span that began at `start` (time.time()) and ends now (CPU unknown: 0)."""
        self.spans.append((self.who, what, start, time.time(), 0.0))

    def extend(self, spans: list[Span]) -> None:
        self.spans.extend(tuple(sp) for sp in spans)  # type: ignore[misc]

    def first(self, who: str, what: str) -> Span | None:
        return next((sp for sp in self.spans if sp[0] == who and sp[1] == what), None)


def _shard_names(tl: Timeline) -> list[str]:
    return sorted({sp[0] for sp in tl.spans if sp[0] != "coordinator"})


def _inside(spans: list[Span], outer: list[Span]) -> tuple[float, float]:
    """(wall, CPU) seconds of `spans` that lie within any of the `outer` spans."""
    inner = [sp for sp in spans if any(o[2] <= sp[2] and sp[3] <= o[3] for o in outer)]
    return sum(sp[3] - sp[2] for sp in inner), sum(sp[4] for sp in inner)


def shard_phases(tl: Timeline, name: str) -> dict[str, tuple[float, float]]:
    """One shard's (wall, CPU) seconds by phase. ``simulate+route`` is its epochs minus the
    writes inside them (``write.*``: in line; ``writer.*`` spans ran on the background
    thread meanwhile and are not subtracted); ``process start`` the wait from the
    coordinator's start_shards to the shard's first span; ``active span`` its first span's
    start to its last one's end."""
    mine = [sp for sp in tl.spans if sp[0] == name]
    if not mine:
        return {}
    epochs = [sp for sp in mine if sp[1] == "epochs"]
    out: dict[str, tuple[float, float]] = {}
    start = tl.first("coordinator", "start_shards")
    if start is not None:
        out["process start"] = (min(sp[2] for sp in mine) - start[2], 0.0)
    for _, what, s, e, cpu in mine:
        if what != "epochs" and not what.startswith(CALL):
            wall0, cpu0 = out.get(what, (0.0, 0.0))
            out[what] = (wall0 + e - s, cpu0 + cpu)
    w_wall, w_cpu = _inside([sp for sp in mine if sp[1].startswith("write.")], epochs)
    out["simulate+route"] = (
        sum(sp[3] - sp[2] for sp in epochs) - w_wall,
        sum(sp[4] for sp in epochs) - w_cpu,
    )
    out["active span"] = (max(sp[3] for sp in mine) - min(sp[2] for sp in mine), 0.0)
    return out


def _line(what: str, wall: float, cpu: float) -> str:
    return f"  {what:<40} {wall:7.2f} s" + (f"  (CPU {cpu:6.2f} s)" if cpu else "")


def breakdown(tl: Timeline) -> list[str]:
    """Human-readable lines: coordinator phases (summed by name), then each shard's phases."""
    lines = ["coordinator (wall, in order):"]
    seen: dict[str, tuple[float, float]] = {}
    for w, what, s, e, cpu in tl.spans:
        if w == "coordinator":
            wall0, cpu0 = seen.get(what, (0.0, 0.0))
            seen[what] = (wall0 + e - s, cpu0 + cpu)
    lines += [_line(what, wall, cpu) for what, (wall, cpu) in seen.items()]
    for name in _shard_names(tl):
        lines.append(f"{name}:")
        lines += [_line(what, w, c) for what, (w, c) in shard_phases(tl, name).items()]
    return lines


@dataclass
class RayCosts:
    """Wall seconds on the replay's critical path attributable to Ray itself (see
    `ray_costs`), and the barrier wait next to them."""

    send_s: float = 0.0  # round start -> the critical shard starts the call (args out)
    reply_s: float = 0.0  # the critical shard ends the call -> the round ends (reply back)
    unmatched_s: float = 0.0  # rounds with no shard span (their whole wall)
    startup_exposed_s: float = 0.0  # shard process start-up the coordinator waited for
    startup_per_process_s: list[float] = field(default_factory=list)
    barrier_s: float = 0.0  # critical shard's call end - the earliest shard's (imbalance)
    init_wait_s: float = 0.0  # shard construction work (cells, trace slice) waited for
    rounds: int = 0

    @property
    def calls_s(self) -> float:
        """Round trips, serialization and object transfers of every call (no start-up)."""
        return self.send_s + self.reply_s + self.unmatched_s


def ray_costs(tl: Timeline, eps_s: float = 0.002) -> RayCosts:
    """Ray's own share of a Ray replay's wall time, from the coordinator's round spans
    (``calls.<method>``) and the shards' spans of the same calls (``call.<method>``).

    Per round the coordinator waits for the shard whose call ends last (the critical
    shard). Its round splits into: Ray sending the call (start of the round, or the end of
    the shard's construction if later, to the start of the shard's call span: argument
    serialization, transfer, scheduling), the shard's own work (its span: not Ray), Ray
    returning the reply (end of its span to the end of the round: reply serialization,
    transfer, ``ray.get``), and, in the first round, waiting for its process to start
    (Ray start-up, reported apart) and for its construction work (not Ray). The barrier
    wait (the critical shard's end minus the earliest shard's) is load imbalance across
    the window/epoch barrier, reported apart: it is not Ray's overhead but the price of
    a barrier. One clock (time.time) on one machine; across nodes only as good as NTP."""
    out = RayCosts()
    shards = _shard_names(tl)
    mine = {n: [sp for sp in tl.spans if sp[0] == n] for n in shards}
    first = {n: min(sp[2] for sp in v) for n, v in mine.items() if v}
    ready = {
        n: max((sp[3] for sp in v if sp[1].startswith("init.")), default=first.get(n, 0.0))
        for n, v in mine.items()
    }
    start = tl.first("coordinator", "start_shards")
    if start is not None:
        out.startup_per_process_s = [first[n] - start[2] for n in shards if n in first]
    for r in tl.spans:
        if r[0] != "coordinator" or not r[1].startswith(ROUND):
            continue
        out.rounds += 1
        what = CALL + r[1][len(ROUND) :]
        served = [
            (n, sp)
            for n in shards
            for sp in mine[n]
            if sp[1] == what and r[2] - eps_s <= sp[2] and sp[3] <= r[3] + eps_s
        ]
        if not served:
            out.unmatched_s += r[3] - r[2]
            continue
        name, c = max(served, key=lambda x: x[1][3])
        out.reply_s += max(0.0, r[3] - c[3])
        out.barrier_s += c[3] - min(sp[3] for _, sp in served)
        begin = r[2]
        if first[name] > begin:  # its process was still starting
            out.startup_exposed_s += min(first[name], c[2]) - begin
            begin = first[name]
        if ready[name] > begin:  # its construction (cells, trace slice) was still running
            out.init_wait_s += min(ready[name], c[2]) - begin
            begin = ready[name]
        out.send_s += max(0.0, c[2] - begin)
    return out
