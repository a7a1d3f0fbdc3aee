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
    appended to one reused buffer (rows start, end, server, work units: no list of arrays to
    concatenate, no fresh memory per fold) and folded into the cumulative ``*_done``
    counters (one add per period, when it has ended, compacting the open ones in place)
    only every :data:`FOLD_PARTS` recorded parts or when the counters are read;
    :meth:`counters` adds the started part of the periods still open at the bound. The
    result is the same as folding at every window (sums of the same terms)."""

    def __init__(self, accelerator_ids: np.ndarray) -> None:
        self.ids = np.asarray(accelerator_ids, dtype=np.int32)
        n = len(self.ids)
        self._busy_done = np.zeros(n, dtype=np.int64)
        self._batches_done = np.zeros(n, dtype=np.int64)
        self._work_done = np.zeros(n, dtype=np.int64)
        self._peak = np.zeros(n, dtype=np.int64)
        self._buf = np.zeros((4, 0), dtype=np.int64)  # start, end, server, work per column
        self._n = 0  # recorded, not yet folded periods: _buf[:, :_n]
        self._parts = 0  # add() calls since the last fold
        self._until = np.iinfo(np.int64).min
        self._snapshot: DeviceCounters | None = None

    def add(
        self, start_ns: np.ndarray, end_ns: np.ndarray, server: np.ndarray, work: np.ndarray
    ) -> None:
        """Record busy periods [start, end) on local server indices, with their work units."""
        k = len(start_ns)
        if not k:
            return
        n = self._n
        if n + k > self._buf.shape[1]:
            grown = np.zeros((4, max(2 * self._buf.shape[1], n + k, 256)), dtype=np.int64)
            grown[:, :n] = self._buf[:, :n]
            self._buf = grown
        buf = self._buf
        buf[0, n : n + k] = start_ns
        buf[1, n : n + k] = end_ns
        buf[2, n : n + k] = server
        buf[3, n : n + k] = work
        self._n = n + k
        self._parts += 1
        self._snapshot = None

    def close(self, until_ns: int) -> None:
        """Account everything before `until_ns` (busy clipped, batches started) from now on."""
        if until_ns != self._until:
            self._until = until_ns
            self._snapshot = None
        if self._parts >= FOLD_PARTS:
            self._fold()

    def _fold(self) -> None:
        """Fold the periods ended by the bound into the *_done counters; keep the others."""
        self._parts = 0
        if self._n:
            done = (self._busy_done, self._batches_done, self._work_done)
            self._n = _fold(self._buf, self._n, self._until, *done)

    def truncate(self, servers: np.ndarray, at_ns: int) -> None:
        """The servers `servers` (local indices) stop at `at_ns` (a failure, right after
        :meth:`close` at `at_ns`): their busy periods end there, later ones never happen."""
        self._fold()
        if not self._n:
            return
        start, end, server, work = self._buf[:, : self._n]
        hit = np.isin(server, servers)
        keep = ~hit | (start < at_ns)
        end = np.where(hit, np.minimum(end, at_ns), end)
        kept = np.stack([start[keep], end[keep], server[keep], work[keep]])
        self._n = kept.shape[1]
        self._buf[:, : self._n] = kept
        self._snapshot = None

    def counters(self) -> DeviceCounters:
        """Cumulative counters as of the last :meth:`close` (fresh arrays, computed when read)."""
        if self._snapshot is None:
            self._fold()
            busy, batches = self._busy_done.copy(), self._batches_done.copy()
            work_units = self._work_done.copy()
            if self._n:
                _open(self._buf, self._n, self._until, busy, batches, work_units)
            self._snapshot = DeviceCounters(
                accelerator_id=self.ids,
                busy_ns=busy,
                batches=batches,
                work_units=work_units,
                peak_memory_bytes=self._peak,
            )
        return self._snapshot


FOLD_PARTS = 64  # recorded parts (one per window with dispatches) between folds


@njit(cache=True, nogil=True)
def _fold(buf, n, until_ns, busy_done, batches_done, work_done):
    """Add the periods of ``buf[:, :n]`` ended by `until_ns` to the *_done counters (in
    place) and move the open ones to the front, in order. Returns how many are open."""
    kept = 0
    for i in range(n):
        if buf[1, i] > until_ns:
            for c in range(4):
                buf[c, kept] = buf[c, i]
            kept += 1
        else:
            s = buf[2, i]
            busy_done[s] += buf[1, i] - buf[0, i]
            batches_done[s] += 1
            work_done[s] += buf[3, i]
    return kept


@njit(cache=True, nogil=True)
def _open(buf, n, until_ns, busy, batches, work_units):
    """Add the started part of open periods (all end after `until_ns`) to the counters."""
    for i in range(n):
        if buf[0, i] < until_ns:
            s = buf[2, i]
            busy[s] += until_ns - buf[0, i]
            batches[s] += 1
            work_units[s] += buf[3, i]


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
