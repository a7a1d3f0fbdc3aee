"""Bookkeeping shared by cells: per-server busy counters clipped at the window bound, and a
buffer that releases computed completions only once simulated time has passed them.

Cells often know a request's finish time long before the simulation reaches it (an FCFS
queue fixes it at arrival). The buffer keeps those rows until ``advance(until_ns)`` passes
``finish_ns`` so that outputs, load reports and device counters describe exactly the state
at ``until_ns`` whatever the window cuts.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mtia_cluster.engine.cell import Completed, DeviceCounters


class BusyLedger:
    """Busy periods per server; :meth:`close` sets the bound everything before which counts.

    Work follows activity, not fleet size: a window costs nothing per server. Periods are
    kept as recorded and folded into the cumulative ``*_done`` counters (one add per period,
    when it has ended) only every :data:`FOLD_PARTS` recorded parts or when the counters are
    read; :meth:`counters` adds the started part of the periods still open at the bound. The
    result is the same as folding at every window (sums of the same terms)."""

    def __init__(self, accelerator_ids: np.ndarray) -> None:
        self.ids = np.asarray(accelerator_ids, dtype=np.int32)
        n = len(self.ids)
        self._busy_done = np.zeros(n, dtype=np.int64)
        self._batches_done = np.zeros(n, dtype=np.int64)
        self._work_done = np.zeros(n, dtype=np.int64)
        self._peak = np.zeros(n, dtype=np.int64)
        self._start: list[np.ndarray] = []
        self._end: list[np.ndarray] = []
        self._server: list[np.ndarray] = []
        self._work: list[np.ndarray] = []
        self._until = np.iinfo(np.int64).min
        self._snapshot: DeviceCounters | None = None

    def add(
        self, start_ns: np.ndarray, end_ns: np.ndarray, server: np.ndarray, work: np.ndarray
    ) -> None:
        """Record busy periods [start, end) on local server indices, with their work units."""
        if len(start_ns):
            self._start.append(start_ns)
            self._end.append(end_ns)
            self._server.append(server)
            self._work.append(work)
            self._snapshot = None

    def close(self, until_ns: int) -> None:
        """Account everything before `until_ns` (busy clipped, batches started) from now on."""
        if until_ns != self._until:
            self._until = until_ns
            self._snapshot = None
        if len(self._start) >= FOLD_PARTS:
            self._fold()

    def _periods(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every recorded, not yet folded period as one set of arrays."""
        if len(self._start) > 1:
            self._start = [np.concatenate(self._start)]
            self._end = [np.concatenate(self._end)]
            self._server = [np.concatenate(self._server)]
            self._work = [np.concatenate(self._work)]
        return self._start[0], self._end[0], self._server[0], self._work[0]

    def _fold(self) -> None:
        """Fold the periods ended by the bound into the *_done counters; keep the others."""
        if not self._start:
            return
        start, end, server, work = self._periods()
        done = (self._busy_done, self._batches_done, self._work_done)
        keep = _fold(start, end, server, work, self._until, *done)
        if not keep.all():
            self._start, self._end = [start[keep]], [end[keep]]
            self._server, self._work = [server[keep]], [work[keep]]
        if not self._start[0].size:
            self._start, self._end, self._server, self._work = [], [], [], []

    def truncate(self, servers: np.ndarray, at_ns: int) -> None:
        """The servers `servers` (local indices) stop at `at_ns` (a failure, right after
        :meth:`close` at `at_ns`): their busy periods end there, later ones never happen."""
        self._fold()
        if not self._start:
            return
        start, end, server, work = self._periods()
        hit = np.isin(server, servers)
        keep = ~hit | (start < at_ns)
        end = np.where(hit, np.minimum(end, at_ns), end)
        self._start, self._end = [start[keep]], [end[keep]]
        self._server, self._work = [server[keep]], [work[keep]]
        self._snapshot = None

    def counters(self) -> DeviceCounters:
        """Cumulative counters as of the last :meth:`close` (fresh arrays, computed when read)."""
        if self._snapshot is None:
            self._fold()
            busy, batches = self._busy_done.copy(), self._batches_done.copy()
            work_units = self._work_done.copy()
            if self._start:
                start, _, server, work = self._periods()
                _open(start, server, work, self._until, busy, batches, work_units)
            self._snapshot = DeviceCounters(
                accelerator_id=self.ids,
                busy_ns=busy,
                batches=batches,
                work_units=work_units,
                peak_memory_bytes=self._peak,
            )
        return self._snapshot


FOLD_PARTS = 64  # recorded parts (one per window with dispatches) between folds


@njit(cache=True)
def _fold(start, end, server, work, until_ns, busy_done, batches_done, work_done):
    """Add the periods ended by `until_ns` to the *_done counters (in place). Returns the
    mask of the periods still open."""
    keep = np.empty(start.shape[0], dtype=np.bool_)
    for i in range(start.shape[0]):
        s = server[i]
        keep[i] = end[i] > until_ns
        if not keep[i]:
            busy_done[s] += end[i] - start[i]
            batches_done[s] += 1
            work_done[s] += work[i]
    return keep


@njit(cache=True)
def _open(start, server, work, until_ns, busy, batches, work_units):
    """Add the started part of open periods (all end after `until_ns`) to the counters."""
    for i in range(start.shape[0]):
        if start[i] < until_ns:
            s = server[i]
            busy[s] += until_ns - start[i]
            batches[s] += 1
            work_units[s] += work[i]


class CompletionBuffer:
    """Holds computed completions until simulated time passes their finish time."""

    def __init__(self) -> None:
        self._parts: list[Completed] = []
        self.released = 0

    def add(self, rows: Completed) -> None:
        if len(rows):
            self._parts.append(rows)

    def release(self, until_ns: int) -> Completed:
        """Rows with finish_ns < until_ns (removed from the buffer)."""
        if not self._parts:
            return Completed.empty()
        rows = Completed.concat(self._parts)
        due = rows.finish_ns < until_ns
        if due.all():
            self._parts = []
            out = rows
        else:
            self._parts = [rows.take(~due)]
            out = rows.take(due)
        self.released += len(out)
        return out
