"""What the coordinator asks its shards to do: the two drivers of a replay.

- `WindowDriver` (coordinator-driven windows; placements that split a region): per window
  ``[t, t + report_interval)`` the coordinator routes the window's arrivals with the
  engine's `RoutingPlane` (the shards' reports of the previous boundary plus its own
  counts), sends each shard with work one call carrying its requests as numpy
  arrays and gets back only load reports. This is the engine's loop (`run_windows`), so
  results equal the single-process engine for every placement. A shard with nothing routed
  and nothing outstanding is not called.
- `EpochDriver` (shards that own whole regions): each shard routes its own regions and runs
  the same loop for a whole epoch of simulated time per call; the coordinator only paces,
  checkpoints and collects `EpochProgress`.

Both checkpoint the shards periodically (`Shards.checkpoint`) and return the run's
simulated end. They reach the shards only through `Shards` (transport.py), so they run the
same on every transport.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from mtia_cluster.distributed.region_worker import EpochProgress
from mtia_cluster.distributed.transport import Args, ShardRef, Shards
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.shard import Reports
from mtia_cluster.engine.windows import LoopHooks, LoopState, finish, run_windows

Progress = Callable[[int, int, int], None]  # (rows done, rows, simulated ns)


class Driver(Protocol):
    mode: str  # the manifest's `mode`

    def run(self, shards: Shards, progress: Progress | None) -> int:
        """Drive the shards to the end of the trace; returns the simulated end (ns)."""
        ...

    def fleet_events(self, shards: Shards) -> list[dict[str, Any]]:
        """The fleet events the shards applied, in time order (the manifest's list)."""
        ...


class WindowDriver:
    """Coordinator-driven windows: one round of calls per window to the shards with work.

    The served rows come in chunks that end at window boundaries: the loop runs up to each
    chunk's end, then continues on the next chunk from the same state (cells give the same
    results for any cut of time, so this equals one pass over the whole trace)."""

    mode = "windows"

    def __init__(
        self,
        plane: RoutingPlane,
        chunks: Iterable[tuple[RequestBatch, int | None]],
        rows: int,
        checkpoint_windows: int,
    ) -> None:
        self.plane, self.chunks, self.rows = plane, chunks, rows
        self.checkpoint_windows = checkpoint_windows

    def run(self, shards: Shards, progress: Progress | None) -> int:
        round_ = _WindowRound(self.plane, shards)
        state, before = LoopState(), 0  # before: rows of the chunks already done

        def after_window() -> None:
            round_.windows += 1
            if round_.windows % self.checkpoint_windows == 0:
                shards.checkpoint()
            if progress is not None:
                progress(before + state.lo, self.rows, state.t)

        def sample(t_ns: int) -> None:
            shards.each("sample", t_ns)

        hooks = LoopHooks(advance=round_, sample=sample, after_window=after_window)
        for chunk, end_ns in self.chunks:
            state.lo, hooks.stop_ns = 0, end_ns
            run_windows(self.plane, chunk, state, hooks)
            before += len(chunk)
        finish(state, state.t, self.plane.scenario.metrics_interval_ns, sample)
        return state.t

    def fleet_events(self, shards: Shards) -> list[dict[str, Any]]:
        return []  # coordinator-driven placements refuse fleet events (prepare.py)


class _WindowRound:
    """The loop's `advance` for the coordinator: each shard with arrivals or outstanding
    work advances to the window's end; their load reports go back to the loop (which hands
    them to the routing plane)."""

    def __init__(self, plane: RoutingPlane, shards: Shards) -> None:
        self.shards = shards
        self.owner = np.zeros(plane.topology.cells, dtype=np.int64)  # shard of each cell
        for i, s in enumerate(shards.refs):
            self.owner[s.spec.cells] = i
        self.busy = np.zeros(len(shards.refs), dtype=bool)  # outstanding after its last call
        self.windows = 0  # windows advanced so far

    def __call__(self, arrivals: RequestBatch, cell: np.ndarray, until: int) -> list[Reports]:
        owner = self.owner[cell]
        active: list[int] = []
        refs: list[ShardRef] = []
        args: list[Args] = []
        for i, s in enumerate(self.shards.refs):
            mine = np.flatnonzero(owner == i)
            if len(mine) or self.busy[i]:
                active.append(i)
                refs.append(s)
                args.append(
                    (arrivals.take(mine).columns() if len(mine) else None, cell[mine], until)
                )
        replies = self.shards.call("advance", args, refs)
        for i, reports in zip(active, replies, strict=True):
            self.busy[i] = bool(np.any(reports[1]))  # outstanding
        return list(replies)


class EpochDriver:
    """Region-owning shards run whole epochs; the coordinator only paces and checkpoints."""

    mode = "region-epochs"

    def __init__(self, rows: int, epoch_ns: int) -> None:
        self.rows, self.epoch_ns = rows, epoch_ns

    def run(self, shards: Shards, progress: Progress | None) -> int:
        stop = self.epoch_ns
        while True:
            states: list[EpochProgress] = shards.each("run_epoch", stop)
            if progress is not None:
                progress(sum(st.rows_done for st in states), self.rows, stop)
            if all(st.finished for st in states):
                break  # no checkpoint after the last epoch: close() commits everything next
            shards.checkpoint()
            stop += self.epoch_ns
        end_ns = max(st.t_ns for st in states)
        shards.each("finish_run", end_ns)
        return end_ns

    def fleet_events(self, shards: Shards) -> list[dict[str, Any]]:
        return shard_logs(shards, "fleet_events")


def shard_logs(shards: Shards, method: str) -> list[dict[str, Any]]:
    """Every shard's log rows (`method`: rows with ``at_ns`` and ``region``), merged in time
    order, then region (stable)."""
    logs = shards.each(method)
    return sorted((e for log in logs for e in log), key=lambda e: (e["at_ns"], e["region"]))
