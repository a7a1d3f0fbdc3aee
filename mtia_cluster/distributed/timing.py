"""Where a replay's wall time goes: named spans from the coordinator and every shard.

Spans use ``time.time()`` (one clock for every process of a machine; on several nodes the
clocks are only as close as NTP keeps them, so the cross-process gaps are estimates there).
The coordinator asks each shard for its spans before closing it, so a breakdown costs one
small call per shard. ``breakdown()`` turns the spans into the lines the benchmark prints.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

Span = tuple[str, str, float, float]  # who, what, start s, end s (time.time())


@dataclass
class Timeline:
    """Spans recorded by one process (or merged from several)."""

    who: str = "coordinator"
    spans: list[Span] = field(default_factory=list)

    @contextmanager
    def span(self, what: str) -> Iterator[None]:
        """Record how long the block takes under `what`."""
        start = time.time()
        try:
            yield
        finally:
            self.spans.append((self.who, what, start, time.time()))

    def mark(self, what: str, start: float, end: float | None = None) -> None:
        """Record a span measured elsewhere (end: now)."""
        self.spans.append((self.who, what, start, time.time() if end is None else end))

    def extend(self, spans: list[Span]) -> None:
        self.spans.extend(spans)

    def total(self, who: str, what: str) -> float:
        """Seconds spent in `what` by `who` (summed over repeats)."""
        return sum(e - s for w, n, s, e in self.spans if w == who and n == what)

    def first(self, who: str, what: str) -> Span | None:
        return next((sp for sp in self.spans if sp[0] == who and sp[1] == what), None)


def _shard_names(tl: Timeline) -> list[str]:
    return sorted({w for w, *_ in tl.spans if w != "coordinator"})


def _inside(spans: list[Span], outer: list[Span]) -> float:
    """Seconds of `spans` that lie within any of the `outer` spans."""
    return sum(e - s for _, _, s, e in spans if any(o[2] <= s and e <= o[3] for o in outer))


def shard_phases(tl: Timeline, name: str) -> dict[str, float]:
    """One shard's seconds by phase; ``simulate`` is its epochs minus the writes inside them,
    ``start`` the wait from the coordinator's start_shards to the shard's first span."""
    mine = [sp for sp in tl.spans if sp[0] == name]
    epochs = [sp for sp in mine if sp[1] == "epochs"]
    out: dict[str, float] = {}
    start = tl.first("coordinator", "start_shards")
    if start is not None and mine:
        out["process start"] = min(sp[2] for sp in mine) - start[2]
    for _, what, s, e in mine:
        if what != "epochs":
            out[what] = out.get(what, 0.0) + (e - s)
    writes = [sp for sp in mine if sp[1].startswith("write.")]
    out["simulate+route"] = sum(e - s for *_, s, e in epochs) - _inside(writes, epochs)
    out["active span"] = max(sp[3] for sp in mine) - min(sp[2] for sp in mine) if mine else 0.0
    return out


def breakdown(tl: Timeline) -> list[str]:
    """Human-readable lines: coordinator phases (summed by name), then each shard's phases."""
    lines = ["coordinator (wall, in order):"]
    seen: dict[str, float] = {}
    for w, what, s, e in tl.spans:
        if w == "coordinator":
            seen[what] = seen.get(what, 0.0) + (e - s)
    for what, secs in seen.items():
        lines.append(f"  {what:<40} {secs:7.2f} s")
    for name in _shard_names(tl):
        lines.append(f"{name}:")
        for what, secs in shard_phases(tl, name).items():
            lines.append(f"  {what:<40} {secs:7.2f} s")
    return lines
