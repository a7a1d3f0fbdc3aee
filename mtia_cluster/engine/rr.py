"""R&R hosts: preprocessing on CPU cores -> dynamic batching -> accelerators.

Each host is a cell; :class:`RRHostGroup` simulates any number of hosts of one pool at once
(struct-of-arrays, every step vectorized across hosts) with exactly the per-host semantics:

* a host has ``sockets`` sockets, each an independent scheduling unit with its own cores and
  accelerators (DESIGN §2); the host's k-th request goes to socket ``k % sockets``;
* preprocessing: each request takes one core of its socket for ``items x cpu_s_per_item``,
  FCFS over the socket's cores;
* dynamic batching per socket (:mod:`~mtia_cluster.engine.batching`);
* dispatch: closed batches queue FCFS for the socket's servers; a server is one accelerator
  or a shard group of ``group`` accelerators under the socket's PCIe switch; the server free
  the longest takes the batch (or a custom :class:`DispatchPolicy` chooses);
* the server is occupied for PCIe in + device compute + PCIe out (no overlap between
  batches on one server); then every request of the batch completes.

A request's times are fixed when its batch closes; completions are released once simulated
time passes them, so window cuts and the grouping of hosts never change a result.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtia_cluster.engine.batching import chain_segments, close_times_segmented
from mtia_cluster.engine.cell import (
    Completed,
    DeviceCounters,
    RequestBatch,
    _Columns,
    completed_from,
)
from mtia_cluster.engine.ledger import BusyLedger
from mtia_cluster.engine.queueing import DispatchPolicy, fcfs_pool, heap_from_free, server_bits


@dataclass
class ServiceTable:
    """Server occupancy per batch size in ns, from a cost function (grows on demand)."""

    cost_s: Callable[[np.ndarray], np.ndarray]
    table_ns: np.ndarray

    @classmethod
    def build(cls, cost_s: Callable[[np.ndarray], np.ndarray], max_items: int) -> ServiceTable:
        sizes = np.arange(1, max_items + 1)
        table = np.zeros(max_items + 1, dtype=np.int64)
        table[1:] = np.maximum(np.ceil(np.asarray(cost_s(sizes)) * 1e9), 1)
        return cls(cost_s=cost_s, table_ns=table)

    def lookup(self, sizes: np.ndarray) -> np.ndarray:
        """Occupancy in ns of batches of `sizes` items."""
        top = int(sizes.max()) if len(sizes) else 0
        if top >= len(self.table_ns):
            grown = ServiceTable.build(self.cost_s, max(top, 2 * (len(self.table_ns) - 1)))
            self.table_ns = grown.table_ns
        return self.table_ns[sizes]


@dataclass(frozen=True)
class RRHostParams:
    """Static description of the hosts of one pool."""

    sockets: int
    cores_per_socket: int
    accelerators_per_socket: int
    group: int  # accelerators per server (shard group); divides accelerators_per_socket
    max_items: int
    max_wait_ns: int
    cpu_s_per_item: float


def _order(unit: np.ndarray, ready_ns: np.ndarray) -> np.ndarray:
    """Stable order by (unit, ready_ns): one composite int64 key when it cannot overflow."""
    base = int(ready_ns.min())
    span = int(ready_ns.max()) - base + 1
    if (int(unit.max()) + 1) * span < 2**62:
        return np.argsort(unit * span + (ready_ns - base), kind="stable")
    return np.lexsort((ready_ns, unit))


@dataclass
class _Waiting(_Columns):
    """Requests between preprocessing and dispatch, sorted by (socket unit, ready_ns)."""

    request_id: np.ndarray
    arrival_ns: np.ndarray
    items: np.ndarray
    ready_ns: np.ndarray
    unit: np.ndarray


class RRHostGroup:
    """Hosts of one pool, simulated together; host i is cell ``cell_ids[i]``."""

    def __init__(
        self,
        *,
        params: RRHostParams,
        table: ServiceTable,
        host_ids: np.ndarray,
        accelerator_ids: np.ndarray,
        cell_ids: np.ndarray | None = None,
        capacity_weight: float = 1.0,
        policy: DispatchPolicy | None = None,
    ) -> None:
        p = self.p = params
        self.table = table
        self.host_ids = np.asarray(host_ids, dtype=np.int32)
        h = len(self.host_ids)
        self.cell_ids = np.asarray(np.arange(h) if cell_ids is None else cell_ids, dtype=np.int64)
        self.acc = np.asarray(accelerator_ids, dtype=np.int32).reshape(-1)
        if len(self.acc) != h * p.sockets * p.accelerators_per_socket:
            raise ValueError("accelerator_ids must list every accelerator of every host")
        self.capacity_weight = capacity_weight
        self.policy = policy
        units = h * p.sockets
        self.servers = p.accelerators_per_socket // p.group
        self.core_free = np.zeros((units, p.cores_per_socket), dtype=np.int64)
        self.server_free = np.zeros((units, self.servers), dtype=np.int64)
        self.heaps = [heap_from_free(self.server_free[u]) for u in range(units)]
        self.submitted = np.zeros(h, dtype=np.int64)
        self.released = np.zeros(h, dtype=np.int64)
        self.waiting = _Waiting.empty()
        self.service = self.region = -1  # a pool serves one service in one region
        self.buffer: list[tuple[Completed, np.ndarray]] = []  # (rows by finish, local host)
        self.ledger = BusyLedger(self.acc)

    # -- cell-group protocol ---------------------------------------------------------------
    def submit(self, host: np.ndarray, batch: RequestBatch) -> None:
        """Requests (sorted by arrival) for local hosts `host`; preprocessing is fixed now."""
        n = len(batch)
        if n == 0:
            return
        h = len(self.host_ids)
        order = np.argsort(host, kind="stable")
        counts = np.bincount(host, minlength=h)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        unit = host * self.p.sockets + (self.submitted[host] + rank) % self.p.sockets
        self.submitted += counts
        by_unit = np.argsort(unit, kind="stable")  # per socket, arrival order
        ready = np.empty(n, dtype=np.int64)
        ready[by_unit] = self._preprocess(
            batch.arrival_ns[by_unit], batch.items[by_unit], unit[by_unit]
        )
        self.service, self.region = int(batch.service[0]), int(batch.region[0])
        new = _Waiting(
            request_id=batch.request_id,
            arrival_ns=batch.arrival_ns,
            items=batch.items,
            ready_ns=ready,
            unit=unit,
        )
        waiting = _Waiting.concat([self.waiting, new]) if len(self.waiting) else new
        self.waiting = waiting.take(_order(waiting.unit, waiting.ready_ns))

    def advance(self, until_ns: int) -> Completed:
        """Close and dispatch batches before `until_ns`; release finished requests."""
        if len(self.waiting):
            self._batch_and_dispatch(until_ns)
        self.ledger.close(until_ns)
        out: list[Completed] = []
        chunks: list[tuple[Completed, np.ndarray]] = []
        for rows, host in self.buffer:  # each chunk sorted by finish: release a prefix
            k = int(np.searchsorted(rows.finish_ns, until_ns, side="left"))
            if k:
                out.append(rows.take(slice(0, k)))
                self.released += np.bincount(host[:k], minlength=len(self.host_ids))
            if k < len(rows):
                chunks.append((rows.take(slice(k, None)), host[k:]))
        self.buffer = chunks
        return Completed.concat(out)

    def outstanding(self) -> np.ndarray:
        """Per local host: requests submitted and not yet released."""
        return self.submitted - self.released

    def capacity(self) -> np.ndarray:
        """Per local host: the router's capacity weight."""
        return np.full(len(self.host_ids), self.capacity_weight)

    def device_counters(self) -> DeviceCounters:
        return self.ledger.counters()

    # -- stages ----------------------------------------------------------------------------
    def _preprocess(self, arrival: np.ndarray, items: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """Ready times after FCFS preprocessing on each socket's cores (rows sorted by unit)."""
        if self.p.cpu_s_per_item <= 0:
            return arrival.copy()
        cpu = np.maximum(np.ceil(items * (self.p.cpu_s_per_item * 1e9)), 1).astype(np.int64)
        n = len(arrival)
        starts = np.flatnonzero(np.concatenate(([True], unit[1:] != unit[:-1])))
        ends = np.append(starts[1:], n)
        units = unit[starts]
        counts = ends - starts
        first_arrival = arrival[starts]
        busy0 = (self.core_free[units] > first_arrival[:, None]).sum(axis=1)
        easy = counts + busy0 < self.p.cores_per_socket  # nobody can wait: exact shortcut
        ready = arrival + cpu
        if easy.any():
            rank = np.arange(n) - np.repeat(starts, counts)
            rows = np.repeat(easy, counts)
            self.core_free[unit[rows], rank[rows]] = ready[rows]
            touched = units[easy]
            self.core_free[touched] = np.sort(self.core_free[touched], axis=1)
        for k in np.flatnonzero(~easy).tolist():
            a, b, u = int(starts[k]), int(ends[k]), int(units[k])
            start, self.core_free[u] = fcfs_pool(arrival[a:b], cpu[a:b], self.core_free[u])
            ready[a:b] = start + cpu[a:b]
        return ready

    def _batch_and_dispatch(self, until_ns: int) -> None:
        n = len(self.waiting)
        unit = self.waiting.unit
        seg_starts = np.flatnonzero(np.concatenate(([True], unit[1:] != unit[:-1])))
        seg_ends = np.append(seg_starts[1:], n)
        seg_end = np.repeat(seg_ends, seg_ends - seg_starts)
        end, close = close_times_segmented(
            self.waiting.ready_ns,
            self.waiting.items,
            seg_end,
            self.p.max_items,
            self.p.max_wait_ns,
            until_ns,
        )
        firsts, _ = chain_segments(seg_starts.tolist(), seg_ends.tolist(), end, close < until_ns)
        if not firsts:
            return
        first = np.array(firsts, dtype=np.int64)
        b_end, b_close, b_unit = end[first], close[first], unit[first]
        cum = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.waiting.items, out=cum[1:])
        b_items = cum[b_end] - cum[first]
        service = self.table.lookup(b_items)
        start, server = self._dispatch(b_unit, b_close, service)
        finish = start + service
        sizes = b_end - first
        g = self.p.group
        local0 = b_unit * self.p.accelerators_per_socket + server * g
        for m in range(g):
            self.ledger.add(start, finish, local0 + m, b_items)
        # member rows ordered by their batch's finish, so that release takes a prefix
        order = np.argsort(finish, kind="stable")
        counts = sizes[order]
        offsets = np.cumsum(counts) - counts
        per_req = np.repeat(order, counts)
        rows_idx = np.repeat(first[order] - offsets, counts) + np.arange(int(counts.sum()))
        members = self.waiting.take(rows_idx)
        host = b_unit[per_req] // self.p.sockets
        rows = completed_from(
            self._requests(members),
            host_id=self.host_ids[host],
            accelerator_id=self.acc[local0[per_req]],
            start_ns=start[per_req],
            first_token_ns=finish[per_req],
            finish_ns=finish[per_req],
            batch_size=sizes[per_req],
        )
        self.buffer.append((rows, host))
        keep = np.ones(n, dtype=bool)
        keep[rows_idx] = False
        self.waiting = self.waiting.take(keep)

    def _requests(self, w: _Waiting) -> RequestBatch:
        """Request columns of waiting rows (R&R requests carry no tokens or session)."""
        n = len(w)
        zeros = np.zeros(n, dtype=np.int32)
        return RequestBatch(
            request_id=w.request_id,
            arrival_ns=w.arrival_ns,
            service=np.full(n, self.service, dtype=np.int32),
            region=np.full(n, self.region, dtype=np.int32),
            items=w.items,
            input_tokens=zeros,
            output_tokens=zeros,
            session_id=np.full(n, -1, dtype=np.int64),
        )

    def _dispatch(
        self, unit: np.ndarray, close: np.ndarray, service: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """FCFS per socket in close order: (start_ns, server) per batch."""
        n = len(unit)
        starts = [0] * n
        servers = [0] * n
        if self.policy is None:
            heaps = self.heaps
            replace = heapq.heapreplace
            bits = server_bits(self.servers)
            mask = (1 << bits) - 1
            for i, (u, c, s) in enumerate(
                zip(unit.tolist(), close.tolist(), service.tolist(), strict=True)
            ):
                heap = heaps[u]
                key = heap[0]
                free = key >> bits
                t = c if c > free else free
                k = key & mask
                replace(heap, ((t + s) << bits) | k)
                starts[i] = t
                servers[i] = k
        else:
            for i in range(n):
                u = int(unit[i])
                t = max(int(close[i]), int(self.server_free[u].min()))
                k = int(self.policy.choose(self.server_free[u], t))
                if self.server_free[u, k] > t:
                    raise ValueError(f"dispatch policy chose busy server {k}")
                self.server_free[u, k] = t + int(service[i])
                starts[i], servers[i] = t, k
        return np.array(starts, dtype=np.int64), np.array(servers, dtype=np.int64)
