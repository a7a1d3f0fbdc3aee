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
    """Busy periods per server; :meth:`close` accounts everything before ``until_ns``."""

    def __init__(self, accelerator_ids: np.ndarray) -> None:
        self.ids = np.asarray(accelerator_ids, dtype=np.int32)
        n = len(self.ids)
        self._busy_done = np.zeros(n, dtype=np.int64)
        self._batches_done = np.zeros(n, dtype=np.int64)
        self._work_done = np.zeros(n, dtype=np.int64)
        self._start: list[np.ndarray] = []
        self._end: list[np.ndarray] = []
        self._server: list[np.ndarray] = []
        self._work: list[np.ndarray] = []
        self._snapshot = DeviceCounters(
            accelerator_id=self.ids,
            busy_ns=self._busy_done.copy(),
            batches=self._batches_done.copy(),
            work_units=self._work_done.copy(),
            peak_memory_bytes=np.zeros(n, dtype=np.int64),
        )

    def add(
        self, start_ns: np.ndarray, end_ns: np.ndarray, server: np.ndarray, work: np.ndarray
    ) -> None:
        """Record busy periods [start, end) on local server indices, with their work units."""
        if len(start_ns):
            self._start.append(start_ns)
            self._end.append(end_ns)
            self._server.append(server)
            self._work.append(work)

    def close(self, until_ns: int) -> None:
        """Update the cumulative counters to `until_ns` (busy clipped, batches started)."""
        if not self._start:
            return  # nothing running or queued: the counters are unchanged
        if len(self._start) == 1:
            start, end, server, work = self._start[0], self._end[0], self._server[0], self._work[0]
        else:
            start = np.concatenate(self._start)
            end = np.concatenate(self._end)
            server = np.concatenate(self._server)
            work = np.concatenate(self._work)
        busy, batches, work_units = (
            self._busy_done.copy(),
            self._batches_done.copy(),
            self._work_done.copy(),
        )
        keep = _close(
            start,
            end,
            server,
            work,
            until_ns,
            self._busy_done,
            self._batches_done,
            self._work_done,
            busy,
            batches,
            work_units,
        )
        if keep.all():
            self._start, self._end, self._server, self._work = [start], [end], [server], [work]
        elif keep.any():
            self._start, self._end = [start[keep]], [end[keep]]
            self._server, self._work = [server[keep]], [work[keep]]
        else:
            self._start, self._end, self._server, self._work = [], [], [], []
        self._snapshot = DeviceCounters(
            accelerator_id=self.ids,
            busy_ns=busy,
            batches=batches,
            work_units=work_units,
            peak_memory_bytes=self._snapshot.peak_memory_bytes,
        )

    def truncate(self, servers: np.ndarray, at_ns: int) -> None:
        """The servers `servers` (local indices) stop at `at_ns` (a failure, right after
        :meth:`close` at `at_ns`): their busy periods end there, later ones never happen."""
        if not self._start:
            return
        start, end = np.concatenate(self._start), np.concatenate(self._end)
        server, work = np.concatenate(self._server), np.concatenate(self._work)
        hit = np.isin(server, servers)
        keep = ~hit | (start < at_ns)
        end = np.where(hit, np.minimum(end, at_ns), end)
        self._start, self._end = [start[keep]], [end[keep]]
        self._server, self._work = [server[keep]], [work[keep]]

    def counters(self) -> DeviceCounters:
        """Cumulative counters as of the last :meth:`close`."""
        return self._snapshot


@njit(cache=True)
def _close(
    start,
    end,
    server,
    work,
    until_ns,
    busy_done,
    batches_done,
    work_done,
    busy,
    batches,
    work_units,
):
    """Fold busy periods ended by `until_ns` into the *_done counters (in place); add the
    started part of the others to the snapshot counters (`busy`, `batches`, `work_units`,
    which start as copies of the *_done ones). Returns the mask of periods still open."""
    keep = np.empty(start.shape[0], dtype=np.bool_)
    for i in range(start.shape[0]):
        s = server[i]
        if end[i] <= until_ns:
            keep[i] = False
            busy_done[s] += end[i] - start[i]
            batches_done[s] += 1
            work_done[s] += work[i]
            busy[s] += end[i] - start[i]
            batches[s] += 1
            work_units[s] += work[i]
        else:
            keep[i] = True
            if start[i] < until_ns:
                busy[s] += until_ns - start[i]
                batches[s] += 1
                work_units[s] += work[i]
    return keep


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
