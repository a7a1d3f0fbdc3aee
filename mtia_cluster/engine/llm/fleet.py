"""The compiled LLM fleet: many windows of route -> submit -> advance in one numba call.

With 8 replicas under ``least_outstanding`` nearly every arrival is its own window (the
routers read the reports at its start), and the per-window Python work (routing plane,
shard, cell, scheduler) costs ~150 us. :class:`CompiledFleet` is a window-loop hook
(``LoopHooks.span``, engine/windows.py) that, when the whole fleet is eligible, packs every
replica's scheduler once (:func:`.jitglue.pack`), runs the windows in
:func:`.fleetkernel.run_span` and writes everything back: the schedulers and cells
(``LLMReplicaCell.absorb``), the shards' reports, the plane's reports, the loop state.
Finished rows are emitted and device counters sampled at each metrics boundary the span
crossed, in the loop's order (rows of the windows up to a boundary, then its sample; the
counters come from the replicas' scalars recorded there, :mod:`.fleetcounters`, shown by
the shards, ``Shard.show_counters``).

Eligible: one routing plane of ``least_outstanding`` or ``round_robin`` routers over
contiguous cells (``RoutingPlane.compiled_ranges``), every cell an LLM replica on the compiled
scheduler loop (no prefix cache, no network time, ``SingleCell``-wrapped, equal cost tables
and limits), no fleet events or autoscaling ahead (``events.next_boundary()`` None), windows
coalesced. Anything else (P/D pools, KV-aware, random or p2c routing, fleet events, the
drain after the last arrival) runs the Python path, which gives the same results: the tests
compare the two (tests/engine_llm/test_fleet_kernel.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from mtia_cluster.engine.cell import (
    STATUS_OK,
    STATUS_REJECTED,
    Completed,
    RequestBatch,
    completed_from,
)
from mtia_cluster.engine.group import SingleCell
from mtia_cluster.engine.llm import fleetkernel as fk
from mtia_cluster.engine.llm import kernel as k
from mtia_cluster.engine.llm.cell import LLMReplicaCell, iteration_floor_as
from mtia_cluster.engine.llm.fleetcounters import boundary_values, shard_counters
from mtia_cluster.engine.llm.jitglue import accumulated, lowest_position, pack, unpack_compacted
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.shard import Shard

SPAN_ROWS = 1 << 15  # trace rows per compiled span at most (bounds the packed arrays)
SPAN_SNAPSHOTS = 4096  # metrics boundaries per span at most
SNAPSHOT_SCALARS = 1 << 18  # replicas x boundaries recorded per span at most (memory)


@dataclass
class Packed:
    """The replicas as the span kernel's stacked arrays, and what unpacking needs."""

    state: tuple[np.ndarray, ...]  # see fleetkernel.run_span
    lo: list[int]  # per replica: scheduler position of local index 0
    m0: np.ndarray  # per replica: packed requests before the span
    base: list[tuple[int, int, int]]  # jitglue.accumulated at packing


class CompiledFleet:
    """A ``LoopHooks.span`` for a fleet of LLM replicas (see module doc)."""

    span_rows = SPAN_ROWS  # trace rows per span at most (tests make spans short)

    def __init__(self, plane: RoutingPlane, shards: list[Shard], emit: Callable) -> None:
        self.plane, self.shards, self.emit = plane, shards, emit
        self.cells: list[LLMReplicaCell] = []
        cell_ids: list[int] = []
        for shard in shards:  # emission order of a window: shard, then group
            for group in shard.groups:
                assert isinstance(group, SingleCell) and isinstance(group.cell, LLMReplicaCell)
                self.cells.append(group.cell)
                cell_ids.append(int(group.cell_ids[0]))
        self.rep_cell = np.array(cell_ids, np.int64)
        # per shard: its accelerator ids, accelerators per replica, slice of the replicas
        self._layout: list[tuple[np.ndarray, list[int], slice]] = []
        first = 0
        for shard in shards:
            layout = shard.replica_layout()
            assert layout is not None
            self._layout.append((*layout, slice(first, first + len(layout[1]))))
            first += len(layout[1])
        self.cell_rep = np.full(len(plane.outstanding), -1, np.int64)
        self.cell_rep[self.rep_cell] = np.arange(len(cell_ids))
        self.host = np.array([c.host_id for c in self.cells], np.int32)
        self.acc = np.array([int(c.accelerator_ids[0]) for c in self.cells], np.int32)
        self._router_of: tuple[Any, np.ndarray | None] = (None, None)
        self._tables_of: tuple[list, tuple | None] = ([], None)
        self._floor = -1  # the replicas' shortest iteration (attoseconds), see _tables

    @classmethod
    def of(cls, plane: RoutingPlane, shards: list[Shard], emit: Callable) -> CompiledFleet | None:
        """The hook when the fleet's make-up is eligible (module doc), else None."""
        if any(type(s) is not Shard for s in shards):
            return None  # a subclass sees every advance (e.g. a watched replay): Python path
        groups = [g for s in shards for g in s.groups]
        if plane.compiled_ranges() is None or not groups:
            return None
        if len(groups) != len(plane.outstanding):
            return None
        for g in groups:
            if type(g) is not SingleCell or type(g.cell) is not LLMReplicaCell:
                return None
            if g.cell.scheduler.kernel is None:
                return None
        return cls(plane, shards, emit)

    def __call__(self, trace: RequestBatch, state: Any, hooks: Any) -> bool:
        """Run a span of windows from ``state`` if it may (else False: the Python path
        runs the next window)."""
        if state.lo >= len(trace) or not hooks.coalesce_idle:
            return False
        if hooks.events.next_boundary() is not None:
            return False
        ranges = self.plane.compiled_ranges()
        tables = self._tables()
        router = self._routers(trace, ranges)
        if ranges is None or router is None or tables is None:
            return False
        if not all(c.fleet_ready() for c in self.cells):
            return False
        if not np.array_equal(self.plane.outstanding, self.plane.reported):
            return False
        packed = self._pack(min(len(trace) - state.lo, self.span_rows))
        c, out, snap, meta = self._buffers(trace, state, hooks, packed)
        nxt = self.plane.round_robin_next()
        view = (self.plane.reported, self.plane.sent, self.cell_rep, self.rep_cell, nxt)
        cols = (
            trace.arrival_ns,
            trace.input_tokens.astype(np.int64),
            trace.output_tokens.astype(np.int64),
            router,
        )
        fk.run_span(tables, packed.state, cols, (ranges[0], ranges[1], *view), c, out, snap, meta)
        if c[fk.NWIN] == 0 and c[fk.T] == state.t:
            return False  # nothing ran (a window too large for the arrays)
        self._finish(trace, state, hooks, packed, (c, out, snap, meta))
        if c[fk.RR]:
            self.plane.set_round_robin_next(nxt)
        return True

    def _tables(self) -> tuple | None:
        """The replicas' common kernel tables (None: some differ or a replica has none),
        memoized on the replicas' table objects (a re-priced replica gets new ones)."""
        tables = [c.scheduler.kernel for c in self.cells]
        known, answer = self._tables_of
        if len(known) == len(tables) and all(a is b for a, b in zip(known, tables, strict=True)):
            return answer
        first = tables[0]
        same = first is not None and all(
            t is not None
            and all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, t, strict=True)
            )
            for t in tables
        )
        self._tables_of = (tables, first if same else None)
        cost = self.cells[0].scheduler.cost
        if min(cost.compute_per_pair_as, cost.memory_per_context_as) < 0:
            self._floor = -1  # iteration time could shrink with context: no floor
        else:
            self._floor = iteration_floor_as(cost)
        return self._tables_of[1]

    def _routers(self, trace: RequestBatch, ranges: tuple | None) -> np.ndarray | None:
        """Router index of every trace row (memoized per trace), None if some row has none."""
        if ranges is None:
            return None
        if self._router_of[0] is trace:
            return self._router_of[1]
        index = ranges[2]
        key = trace.region.astype(np.int64) * len(self.plane.services) + trace.service
        router = None
        if not len(key) or (key.min() >= 0 and key.max() < len(index)):
            router = index[key] if len(key) else np.zeros(0, np.int64)
            if len(router) and router.min() < 0:
                router = None
        self._router_of = (trace, router)
        return router

    def _pack(self, rows: int) -> Packed:
        """Every replica's state in stacked arrays with room for `rows` more requests."""
        parts, los = [], []
        for cell in self.cells:
            sched = cell.scheduler
            lo = min([lowest_position(sched), *cell.held_positions()])
            parts.append(pack(sched, lo))
            los.append(lo)
        n = len(parts)
        m0 = np.array([p[0].shape[1] for p in parts], np.int64)
        # room per replica: all the span's rows for a few replicas, else about twice an
        # even share (the span ends before a window that a replica has no room for)
        cap = int(m0.max()) + min(rows, max(256, 2 * rows // n + 64))
        heap = max(len(p[2]) for p in parts)
        bs = len(parts[0][4])
        req = np.zeros((n, k.NCOL, cap), np.int64)
        s = np.zeros((n, k.NSCALAR), np.int64)
        hf, hr = np.zeros((n, heap), np.int64), np.zeros((n, heap), np.int64)
        res = np.zeros((n, bs), np.int64)
        wait, fin, sr, sns, row, rej, held = (np.zeros((n, cap), np.int64) for _ in range(7))
        bk = np.zeros((n, fk.NBOOK), np.int64)
        for i, (p, cell) in enumerate(zip(parts, self.cells, strict=True)):
            preq, ps, phf, phr, pres, pwait, psr, psns = p
            m = preq.shape[1]
            req[i, :, :m], s[i] = preq, ps
            hf[i, : len(phf)], hr[i, : len(phr)], res[i] = phf, phr, pres
            wait[i, :m], sr[i, : len(psr)], sns[i, : len(psns)] = pwait, psr, psns
            row[i, :m] = -1  # submitted before the span: rows come from the cell
            rej[i, :m] = cell.scheduler.rejected[los[i] :]
            held_i = [r - los[i] for r in cell.held_positions()]
            held[i, : len(held_i)] = held_i
            bk[i, fk.NSTREAM], bk[i, fk.M], bk[i, fk.NHELD] = len(psr), m, len(held_i)
            bk[i, fk.SUB] = cell.report().outstanding  # returns are counted from 0
        state = (req, s, hf, hr, res, wait, fin, sr, sns, row, rej, held, bk)
        base = [accumulated(c.scheduler) for c in self.cells]
        return Packed(state, los, m0, base)

    def _buffers(self, trace: RequestBatch, state: Any, hooks: Any, packed: Packed) -> tuple:
        """The span's clock, output and snapshot arrays."""
        sc = self.plane.scenario
        c = np.zeros(fk.NCLOCK, np.int64)
        c[fk.T], c[fk.LO], c[fk.STEP] = state.t, state.lo, sc.report_interval_ns
        c[fk.METRICS], c[fk.MAX_ROWS] = sc.metrics_interval_ns, self.span_rows
        c[fk.STOP] = -1 if hooks.stop_ns is None else hooks.stop_ns
        c[fk.LAST_ADV], c[fk.FLOOR] = self.shards[0].until_ns, self._floor
        c[fk.BLIND] = not self.plane.reads_reports  # hooks.coalesce_idle: WindowClock.blind
        c[fk.RR] = sc.policy == "round_robin"
        last = int(trace.arrival_ns[min(len(trace), state.lo + self.span_rows) - 1])
        snaps = min(SPAN_SNAPSHOTS, max(0, last - state.t) // sc.metrics_interval_ns + 2)
        snaps = max(2, min(snaps, SNAPSHOT_SCALARS // len(self.cells)))
        n, cap = packed.state[0].shape[0], packed.state[0].shape[2]
        out = tuple(np.zeros(n * cap, np.int64) for _ in range(3))
        snap = np.zeros((snaps, n, k.NSCALAR), np.int64)
        meta = np.zeros((snaps, 3), np.int64)
        return c, out, snap, meta

    def _finish(
        self, trace: RequestBatch, state: Any, hooks: Any, packed: Packed, span: tuple
    ) -> None:
        """Emit the span's rows and samples in the loop's order, then write it all back."""
        c, out, snap, meta = span
        rows, windows = self._completed(trace, packed, c, out)
        nsnap, done = int(c[fk.NSNAP]), 0
        values = boundary_values(self.cells, snap[:nsnap], meta[:nsnap, 2], packed.base)
        for q, (t, win, adv) in enumerate(meta[:nsnap].tolist()):
            upto = int(np.searchsorted(windows, win, side="left"))
            if upto > done:
                self.emit(rows.take(slice(done, upto)))  # views: the consumers copy
                done = upto
            for shard, (ids, sizes, part) in zip(self.shards, self._layout, strict=True):
                shard.show_counters(shard_counters(values, q, ids, sizes, part))
                shard.advanced_to(adv, refresh=False)
            hooks.sample(t)
            state.sampled_ns = t
            hooks.after_window()
        for shard in self.shards:
            shard.show_counters(None)
        if len(rows) > done:
            self.emit(rows.take(slice(done, len(rows))))
        self._write_back(trace, packed, int(c[fk.LAST_ADV]))
        state.lo, state.t = int(c[fk.LO]), int(c[fk.T])
        np.copyto(self.plane.outstanding, self.plane.reported)
        hooks.after_window()

    def _completed(
        self, trace: RequestBatch, packed: Packed, c: np.ndarray, out: tuple
    ) -> tuple[Completed, np.ndarray]:
        """The returned requests' rows in the order the Python path emits them (window,
        shard and group, finish, position) and the window of each."""
        req, row, rej = packed.state[0], packed.state[9], packed.state[10]
        n = int(c[fk.NOUT])
        w, rep, pos = (a[:n] for a in out)
        finish = req[rep, k.EN, pos]
        order = np.lexsort((pos, finish, rep, w))
        w, rep, pos, finish = w[order], rep[order], pos[order], finish[order]
        batch = self._requests(trace, packed, rep, pos, row[rep, pos])
        done = completed_from(
            batch,
            host_id=self.host[rep],
            accelerator_id=self.acc[rep],
            start_ns=req[rep, k.SN, pos],
            first_token_ns=req[rep, k.FN, pos],
            finish_ns=finish,
            status=np.where(rej[rep, pos] != 0, STATUS_REJECTED, STATUS_OK).astype(np.int8),
            batch_size=req[rep, k.BSZ, pos].astype(np.int32),
            preemptions=req[rep, k.PRE, pos].astype(np.int32),
            cached_tokens=0,
            network_ns=0,
        )
        return done, w

    def _requests(
        self,
        trace: RequestBatch,
        packed: Packed,
        rep: np.ndarray,
        pos: np.ndarray,
        rows: np.ndarray,
    ) -> RequestBatch:
        """The submitted rows of the returned requests: trace rows of the span's arrivals,
        the cells' rows for requests submitted before it."""
        old = rows < 0
        if not old.any():
            return trace.take(rows)
        parts, where = [trace.take(rows[~old])], np.empty(len(rows), np.int64)
        where[~old] = np.arange(int((~old).sum()))
        start = len(parts[0])
        for i in np.unique(rep[old]).tolist():
            mine = np.flatnonzero(old & (rep == i))
            parts.append(self.cells[i].rows_at(pos[mine] + packed.lo[i]))
            where[mine] = np.arange(start, start + len(mine))
            start += len(mine)
        return RequestBatch.concat(parts).take(where)

    def _write_back(self, trace: RequestBatch, packed: Packed, until_ns: int) -> None:
        """Schedulers, cells and shards as the Python path leaves them at `until_ns`, the
        requests finished and returned at the front forgotten (``LLMReplicaCell._compact``:
        they are never written back)."""
        req, s, hf, hr, res, wait, fin, sr, sns, row, rej, held, bk = packed.state
        for i, cell in enumerate(self.cells):
            lo, m0, m = packed.lo[i], int(packed.m0[i]), int(bk[i, fk.M])
            kept = held[i, : bk[i, fk.NHELD]]
            cut = lo + _compactable(req[i, k.ST, :m], kept) if cell.compactable() else 0
            batch = trace.take(row[i, m0:m])
            arrays = (
                req[i][:, :m],
                s[i],
                rej[i, :m],
                (hf[i], hr[i], res[i], wait[i], fin[i]),
                (sr[i, : bk[i, fk.NSTREAM]], sns[i, : bk[i, fk.NSTREAM]]),
            )

            write = partial(
                unpack_compacted,
                lo=lo,
                packed=arrays,
                base=packed.base[i],
                sessions=batch.session_id.tolist(),
            )
            cell.absorb(batch, write, (kept + lo).tolist(), int(bk[i, fk.RET]), until_ns, cut)
        for shard in self.shards:
            shard.advanced_to(until_ns, refresh=True)


def _compactable(state: np.ndarray, kept: np.ndarray) -> int:
    """How many leading positions of a replica's packed requests are finished and not held
    back (returned: a compaction may forget them)."""
    done = state == k.DONE
    done[kept] = False
    return len(done) if done.all() else int(np.argmin(done))
