"""A shard worker: the cells of one shard, advanced window by window, writing its own parts.

A plain class so it runs in-process for tests and inside a Ray actor for real runs
(`ray_transport.py` runs it as a Ray actor). It rebuilds its cells from the scenario (ids are
deterministic), writes finished requests and device intervals through its own
:class:`~mtia_cluster.results.ShardWriter`, and returns only load reports.

Converting, summarizing and compressing those rows runs on a background thread of the
worker (`BackgroundWriter`, as `simulate -o` does: one thread, calls in submission order, so
every file and statistic is the one writing in line gives), while the engine goes on. The
rows handed to it are final (`_final` runs on the engine's thread: it reads state the
engine changes) and device counters are copied first. A checkpoint and `close` wait for
every submitted write before they commit parts or save the state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.distributed import ray_env
from mtia_cluster.distributed.timing import Span, Timeline
from mtia_cluster.engine.cell import Completed, DeviceCounters, RequestBatch
from mtia_cluster.engine.shard import Inbox, Shard
from mtia_cluster.engine.topology import build_topology, make_groups
from mtia_cluster.results import DeviceTracker, RunTarget
from mtia_cluster.results.background import BackgroundWriter
from mtia_cluster.results.convert import fleet_device_info
from mtia_cluster.results.partials import ShardStats, return_freed_memory
from mtia_cluster.results.stream import RowStream

# cell id, outstanding, capacity; prefix-cache events: cell, hash id, sign (shard.LoadReports)
Reports = tuple[np.ndarray, ...]
CHECKPOINTS_DIR = "_checkpoints"  # shard states (cloudpickle) in the run's temporary directory


class StaleShard(RuntimeError):
    """A call reached a shard whose state is older than the coordinator expects (Ray restarted
    the actor from its checkpoint between two calls, without any call failing)."""


class ShardWorker:
    """One shard of a replay (see module docstring)."""

    def __init__(
        self,
        scenario_raw: dict[str, Any],
        scenario_file: str | None,
        cell_ids: list[int],
        target: RunTarget,
        name: str,
    ) -> None:
        self.name = name
        self.target = target
        self.timeline = Timeline(name, thread_cpu=True)  # two threads: each span's own CPU
        self.checkpoint_path = Path(target.tmp_dir) / CHECKPOINTS_DIR / f"{name}.pkl"
        with self.timeline.span("init.build"):
            scenario = parse_scenario(scenario_raw, scenario_file)
            catalog = load_catalog()
            topology = build_topology(scenario, catalog)
            self.topology = topology
            self.shard = Shard(make_groups(topology, cell_ids))
            accelerators = np.sort(self.shard.device_counters().accelerator_id)
            info, chips = fleet_device_info(topology, accelerators)
            self.tracker = DeviceTracker(
                info,
                regions=[r.name for r in scenario.regions],
                chips=chips,
                services=scenario.services,
            )
        self.last_sample_ns = 0
        self.window = 0  # windows advanced so far (for restarts)
        self.calls = 0  # guarded calls executed (restored with the checkpoint)
        # finished requests, written in large pieces (the buffer `simulate -o` uses) on the
        # background writer's thread
        self.background = BackgroundWriter(name=f"{name}-writer")
        self.rows = RowStream(self._write_rows, submit=self._submit)
        self.restored = self._restore()
        self.writer = target.open_shard(name)  # drops parts written after the checkpoint

    def advance(
        self, requests: dict[str, np.ndarray] | None, cell: np.ndarray | None, until_ns: int
    ) -> Reports:
        """Advance to `until_ns` with the window's routed requests; write what finished."""
        inbox = None if requests is None or cell is None else Inbox(RequestBatch(**requests), cell)
        done, reports = self.shard.advance(inbox, until_ns)
        self._emit(done)
        self.window += 1
        return reports.arrays()

    def guarded(self, seq: int, method: str, args: tuple[Any, ...]) -> Any:
        """Run call number `seq` of the coordinator; refuse it if this state is not at `seq`."""
        if seq != self.calls:
            raise StaleShard(f"{self.name}: state at call {self.calls}, coordinator sent {seq}")
        with self.timeline.span(f"call.{method}"):  # the shard's own part of the round
            out = getattr(self, method)(*args)
        self.calls += 1
        return out

    def next_call(self) -> int:
        """The call number this shard expects next (after a restart: its checkpoint's)."""
        return self.calls

    def _emit(self, rows: Completed) -> None:
        """Buffer finished rows, made final here, for writing (flushed in large pieces):
        row by row the same as finalizing the joined pieces, as `simulate -o` does."""
        if len(rows):
            self.rows.add(self._final(rows))

    def _submit(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the background writer (after the calls submitted before)."""
        self.background.submit(fn, *args)

    def _drain(self, reopen: bool = True) -> None:
        """Write buffered rows and wait for every submitted write (raising its error);
        `reopen`: a new writer thread for the writes after."""
        self.rows.flush()
        with self.timeline.span("write.wait"):
            self.background.close()
        if reopen:
            self.background = BackgroundWriter(name=f"{self.name}-writer")

    def _final(self, rows: Completed) -> Completed:
        """The rows as written (a region shard restores retried requests' arrivals)."""
        return rows

    def _write_rows(self, rows: Completed) -> None:
        with self.timeline.span("writer.requests"):  # background thread
            self.writer.write_completed(rows)

    def sample(self, t_ns: int) -> None:
        """Write the devices rows of [last sample, t_ns) (from a copy of the counters)."""
        if t_ns > self.last_sample_ns:
            counters = self.shard.device_counters()
            copied = DeviceCounters(**{n: a.copy() for n, a in counters.columns().items()})
            self._submit(self._write_devices, copied, self.last_sample_ns, t_ns)
            self.last_sample_ns = t_ns

    def _write_devices(self, counters: DeviceCounters, start_ns: int, end_ns: int) -> None:
        with self.timeline.span("writer.devices"):  # background thread
            self.writer.write_devices(
                self.tracker.interval(counters, start_ns=start_ns, end_ns=end_ns)
            )

    def _extra_state(self) -> Any:
        """What a subclass adds to a checkpoint."""
        return None

    def _set_extra_state(self, extra: Any) -> None:
        """Restore what `_extra_state` saved."""

    def checkpoint(self) -> int:
        """Commit written parts and save the shard's state; returns the window count."""
        with self.timeline.span("checkpoint"):
            return self._checkpoint()

    def _checkpoint(self) -> int:
        self._drain()  # everything before the checkpoint is written and committed with it
        self.writer.checkpoint()  # commits the open parts; numbering continues after restart
        # the checkpoint call itself counts: a restored shard resumes at the next call
        state = (
            self.shard,
            self.tracker,
            self.last_sample_ns,
            self.window,
            self.calls + 1,
            self._extra_state(),
        )
        self.checkpoint_path.parent.mkdir(exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_bytes(_pickler().dumps(state))
        tmp.replace(self.checkpoint_path)
        # freed heap pages back to the OS (~15 ms): a long run's per-window arrays leave
        # holes between the statistics' small kept pieces, and without this a shard's RSS
        # grew ~32 bytes per request (16 x 100 racks) against ~12 with it
        return_freed_memory()
        return self.window

    def _restore(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = _pickler().loads(self.checkpoint_path.read_bytes())
        self.shard, self.tracker, self.last_sample_ns, self.window, self.calls, extra = state
        self._pending_extra = extra
        return True

    def windows_done(self) -> int:
        return self.window

    def close(self) -> ShardStats:
        """Close the shard's files; returns the summary statistics of the requests it wrote
        (results/partials.py: the coordinator merges them instead of reading requests back)."""
        with self.timeline.span("close"):
            self._drain(reopen=False)
            stats = self.writer.close()
        # the caller takes them (through Ray's object store, a copy): this process need not
        # keep its own (at an hour's run ~1 GB of kept latencies per shard until it exits)
        self.writer.stats = None
        return stats

    def abandon(self) -> None:
        """Stop this worker's writer thread without writing what is queued (a long-lived
        host replacing the worker of a failed replay: the thread would otherwise stay)."""
        self.background.cancel()

    def timings(self) -> list[Span]:
        """This process's spans since it started (see distributed/timing.py)."""
        return self.timeline.spans

    def node(self) -> str:
        """The Ray node this shard runs on ("local" outside Ray)."""
        return ray_env.node_id()


def _pickler() -> Any:
    """cloudpickle (shipped with Ray): cell state holds closures plain pickle refuses."""
    return ray_env.cloudpickle()
