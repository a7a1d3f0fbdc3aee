"""What the coordinator asks its shards to do: the two drivers of a replay.

- `WindowDriver` (coordinator-driven windows; placements that split a region): per window
  ``[t, t + report_interval)`` the coordinator routes the window's arrivals with the region
  routers (the engine's own routing, from the shards' reports of the previous boundary plus
  its own counts), sends each shard with work one call carrying its requests as numpy
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
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.windows import LoopState, finish, run_windows

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
        sim: Simulation,
        chunks: Iterable[tuple[RequestBatch, int | None]],
        rows: int,
        checkpoint_windows: int,
    ) -> None:
        self.sim, self.chunks, self.rows = sim, chunks, rows
        self.checkpoint_windows = checkpoint_windows

    def run(self, shards: Shards, progress: Progress | None) -> int:
        round_ = _WindowRound(self.sim, shards, self.checkpoint_windows)
        state, before = LoopState(), 0  # before: rows of the chunks already done

        def advance(arrivals: RequestBatch, cell: np.ndarray, until: int) -> None:
            round_(arrivals, cell, until)
            if progress is not None:
                progress(before + state.lo, self.rows, until)

        def sample(t_ns: int) -> None:
            shards.each("sample", t_ns)

        for chunk, end_ns in self.chunks:
            state.lo = 0
            run_windows(self.sim, chunk, state, advance, sample, end_ns)
            before += len(chunk)
        finish(state, state.t, self.sim.scenario.metrics_interval_ns, sample)
        return state.t

    def fleet_events(self, shards: Shards) -> list[dict[str, Any]]:
        return []  # coordinator-driven placements refuse fleet events (prepare.py)


class _WindowRound:
    """One window's calls: each shard with arrivals or outstanding work advances to the
    window's end; its load reports update the coordinator's routers."""

    def __init__(self, sim: Simulation, shards: Shards, checkpoint_windows: int) -> None:
        self.sim, self.shards, self.checkpoint_windows = sim, shards, checkpoint_windows
        self.owner = np.zeros(sim.topology.cells, dtype=np.int64)  # shard of each cell
        for i, s in enumerate(shards.refs):
            self.owner[s.spec.cells] = i
        self.busy = np.zeros(len(shards.refs), dtype=bool)  # outstanding after its last call
        self.window = 0

    def __call__(self, arrivals: RequestBatch, cell: np.ndarray, until: int) -> None:
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
        for i, reports in zip(active, self.shards.call("advance", args, refs), strict=True):
            self.sim.take_reports(*reports)
            self.busy[i] = bool(np.any(reports[1]))  # outstanding
        self.window += 1
        if self.window % self.checkpoint_windows == 0:
            self.shards.checkpoint()


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
        logs = shards.each("fleet_events")
        return sorted((e for log in logs for e in log), key=lambda e: (e["at_ns"], e["region"]))
