"""R&R hosts: preprocessing on CPU cores -> dynamic batching -> accelerators.

Each host is a cell; :class:`RRHostGroup` simulates any number of hosts of one pool at once
(struct-of-arrays state; each window is three compiled passes over the window's requests
and batches, never over idle hosts, see :mod:`~mtia_cluster.engine.rr_kernel`; one group may
hold the hosts of several pools with the same parameters) with exactly the per-host
semantics:

* a host has ``sockets`` sockets, each an independent scheduling unit with its own cores and
  accelerators (DESIGN §2); the host's k-th request goes to socket ``k % sockets``;
* preprocessing: each request takes one core of its socket for ``items x cpu_s_per_item``,
  FCFS over the socket's cores;
* dynamic batching per socket (the rule is in :mod:`~mtia_cluster.engine.rr_kernel`);
* dispatch: closed batches queue FCFS for the socket's servers; a server is one accelerator
  or a shard group of ``group`` accelerators under the socket's PCIe switch; the server free
  the longest takes the batch (or a custom :class:`DispatchPolicy` chooses);
* the server is occupied for PCIe in + device compute + PCIe out (no overlap between
  batches on one server); then every request of the batch completes.

A request's times are fixed when its batch closes; completions are released once simulated
time passes them, so window cuts and the grouping of hosts never change a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtia_cluster.engine.cell import (
    Completed,
    DeviceCounters,
    RequestBatch,
    make_requests,
)
from mtia_cluster.engine.fabric.embedding import EmbeddingNet
from mtia_cluster.engine.ledger import BusyLedger
from mtia_cluster.engine.queueing import DispatchPolicy, fcfs_servers_policy
from mtia_cluster.engine.rr_kernel import (
    B_CLOSE,
    B_END,
    B_FIRST,
    B_SIZE,
    R_ACC,
    R_ARR,
    R_FINISH,
    R_HOST,
    R_ID,
    R_ITEMS,
    R_LOCAL,
    R_NET,
    R_SIZE,
    R_START,
    W_ARR,
    W_ID,
    W_ITEMS,
    W_UNIT,
    admit_and_batch,
    count_rows,
    dispatch_and_emit,
    dispatch_fcfs,
    emit_rows,
)


@dataclass
class ServiceTable:
    """Server occupancy per batch size in ns, from a cost function: tabulated up to the
    pool's max_items; a larger batch (one request with more items than max_items) is costed
    directly, so memory follows the configuration, never the largest request."""

    cost_s: Callable[[np.ndarray], np.ndarray]
    table_ns: np.ndarray

    @classmethod
    def build(cls, cost_s: Callable[[np.ndarray], np.ndarray], max_items: int) -> ServiceTable:
        table = np.zeros(max_items + 1, dtype=np.int64)
        table[1:] = _occupancy_ns(cost_s, np.arange(1, max_items + 1))
        return cls(cost_s=cost_s, table_ns=table)

    def lookup(self, sizes: np.ndarray) -> np.ndarray:
        """Occupancy in ns of batches of `sizes` items."""
        inside = sizes < len(self.table_ns)
        if inside.all():
            return self.table_ns[sizes]
        out = np.empty(len(sizes), dtype=np.int64)
        out[inside] = self.table_ns[sizes[inside]]
        out[~inside] = _occupancy_ns(self.cost_s, sizes[~inside])
        return out


def _occupancy_ns(cost_s: Callable[[np.ndarray], np.ndarray], sizes: np.ndarray) -> np.ndarray:
    """Occupancy in whole ns (at least 1) of batches of `sizes` items."""
    return np.maximum(np.ceil(np.asarray(cost_s(sizes)) * 1e9), 1).astype(np.int64)


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


def _no_rows(height: int) -> np.ndarray:
    return np.zeros((height, 0), dtype=np.int64)


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
        network: EmbeddingNet | None = None,
    ) -> None:
        p = self.p = params
        self.table = table
        self.network = network  # remote embedding lookups (None: every table is local)
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
        # per socket: busy cores, latest arrival, the busy cores' free times (a min-heap;
        # rr_kernel.core_start)
        self.core_heap = np.zeros((units, p.cores_per_socket + 2), dtype=np.int64)
        self.server_free = np.zeros((units, self.servers), dtype=np.int64)
        self.pending: list[tuple[np.ndarray, RequestBatch]] = []  # submitted, not yet admitted
        self.submitted = np.zeros(h, dtype=np.int64)
        self.released = np.zeros(h, dtype=np.int64)
        # requests between preprocessing and dispatch: one int64 column each (rows W_*,
        # rr_kernel), sorted by (socket unit, ready_ns); one array, so a window's slicing
        # and merging are single numpy operations
        self.waiting = _no_rows(5)
        # service and region of each host (set by its requests; a group may hold the hosts
        # of several pools with the same parameters)
        self.host_service = np.full(h, -1, dtype=np.int32)
        self.host_region = np.full(h, -1, dtype=np.int32)
        # dispatched requests not yet released: one int64 matrix per window (rows R_*,
        # rr_kernel: the varying columns of their output rows and the local host), each
        # sorted by finish
        self.buffer: list[np.ndarray] = []
        self.ledger = BusyLedger(self.acc)
        self._capacity = np.full(h, capacity_weight)
        self._none = Completed.empty()

    # -- cell-group protocol ---------------------------------------------------------------
    def submit(self, host: np.ndarray, batch: RequestBatch) -> None:
        """Requests (sorted by arrival) for local hosts `host`; admitted at the next advance."""
        if len(batch) == 0:
            return
        host = np.asarray(host, dtype=np.int64)
        self.host_service[host] = batch.service
        self.host_region[host] = batch.region
        self.pending.append((host, batch))

    def advance(self, until_ns: int) -> Completed:
        """Close and dispatch batches before `until_ns`; release finished requests.

        Work is proportional to activity: the kernels run only when requests wait, and
        their passes touch the requests, not the hosts; the busy ledger accounts periods
        when they end (no per-window pass over accelerators)."""
        if self.pending or self.waiting.shape[1]:
            self._batch_and_dispatch(until_ns)
        self.ledger.close(until_ns)
        if not self.buffer:
            return self._none
        out: list[np.ndarray] = []
        rest: list[np.ndarray] = []
        for rows in self.buffer:  # each part sorted by finish: release a prefix
            k = int(np.searchsorted(rows[R_FINISH], until_ns, side="left"))
            if k == rows.shape[1]:
                out.append(rows)
            elif k:
                out.append(rows[:, :k])
                rest.append(rows[:, k:])
            else:
                rest.append(rows)
        self.buffer = rest
        if not out:
            return self._none
        done = out[0] if len(out) == 1 else np.concatenate(out, axis=1)
        count_rows(self.released, done[R_LOCAL])
        return self._completed(done)

    def _completed(self, rows: np.ndarray) -> Completed:
        """Output rows of released requests (`rows`: a matrix of rows ``R_*``)."""
        n = rows.shape[1]
        zeros = np.zeros(n, dtype=np.int32)
        local = rows[R_LOCAL]
        region = self.host_region[local]
        return Completed(
            request_id=rows[R_ID],
            service=self.host_service[local],
            region=region,
            host_id=rows[R_HOST].astype(np.int32),
            accelerator_id=rows[R_ACC].astype(np.int32),
            arrival_ns=rows[R_ARR],
            start_ns=rows[R_START],
            first_token_ns=rows[R_FINISH],
            finish_ns=rows[R_FINISH],
            status=np.zeros(n, dtype=np.int8),
            batch_size=rows[R_SIZE].astype(np.int32),
            items=rows[R_ITEMS].astype(np.int32),
            input_tokens=zeros,
            output_tokens=zeros,
            preemptions=zeros,
            cached_tokens=np.zeros(n, dtype=np.int64),
            origin_region=region,
            spill_rtt_ns=np.zeros(n, dtype=np.int64),
            network_ns=rows[R_NET],
        )

    def evict(self, local: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        """Hosts `local` fail at `at_ns` (right after ``advance(at_ns)``): every request they
        hold (waiting, in preprocessing, batched or running) leaves them, and they restart
        empty. Returns those requests (arrival order) and the local host of each."""
        p = self.p
        down = np.zeros(len(self.host_ids), dtype=bool)
        down[np.asarray(local, dtype=np.int64)] = True
        w = self.waiting
        gone = down[w[W_UNIT] // p.sockets]
        where = [w[W_UNIT, gone] // p.sockets]
        parts = [self._requests(w[W_ID, gone], w[W_ARR, gone], w[W_ITEMS, gone], where[0])]
        self.waiting = w[:, ~gone]
        chunks: list[np.ndarray] = []
        for rows in self.buffer:
            hit = down[rows[R_LOCAL]]
            if hit.any():
                where.append(rows[R_LOCAL, hit])
                parts.append(
                    self._requests(rows[R_ID, hit], rows[R_ARR, hit], rows[R_ITEMS, hit], where[-1])
                )
                rows = rows[:, ~hit]
            if rows.shape[1]:
                chunks.append(rows)
        self.buffer = chunks
        units = (np.flatnonzero(down)[:, None] * p.sockets + np.arange(p.sockets)).ravel()
        self.core_heap[units, 0] = 0  # every core free from at_ns (arrivals come later)
        self.core_heap[units, 1] = at_ns
        self.server_free[units] = at_ns
        per_host = p.sockets * p.accelerators_per_socket
        acc = (np.flatnonzero(down)[:, None] * per_host + np.arange(per_host)).ravel()
        self.ledger.truncate(acc, at_ns)
        self.released[down] = self.submitted[down]
        batch, host = RequestBatch.concat(parts), np.concatenate(where)
        order = np.lexsort((batch.request_id, batch.arrival_ns))
        return batch.take(order), host[order]

    def _requests(
        self, rid: np.ndarray, arrival: np.ndarray, items: np.ndarray, local: np.ndarray
    ) -> RequestBatch:
        """Request columns of R&R rows held by local hosts `local` (no tokens, no session)."""
        service, region = self.host_service[local], self.host_region[local]
        items = np.asarray(items, dtype=np.int32)
        return make_requests(arrival, request_id=rid, service=service, region=region, items=items)

    def outstanding(self) -> np.ndarray:
        """Per local host: requests submitted and not yet released."""
        return self.submitted - self.released

    def capacity(self) -> np.ndarray:
        """Per local host: the router's capacity weight."""
        return self._capacity

    def device_counters(self) -> DeviceCounters:
        return self.ledger.counters()

    # -- stages ----------------------------------------------------------------------------
    def _admitted(self) -> tuple[np.ndarray, RequestBatch]:
        """The requests submitted since the last advance, in arrival order."""
        if len(self.pending) == 1:
            host, batch = self.pending[0]
        elif self.pending:  # several submits in one window: in submission order
            host = np.concatenate([h for h, _ in self.pending])
            batch = RequestBatch.concat([b for _, b in self.pending])
        else:
            host, batch = np.zeros(0, dtype=np.int64), RequestBatch.empty()
        self.pending = []
        return host, batch

    def _batch_and_dispatch(self, until_ns: int) -> None:
        """Admit the window's requests, close the batches due before `until_ns`, dispatch
        them to servers and keep their rows until they finish."""
        p = self.p
        host, batch = self._admitted()
        merged, batches, self.waiting = admit_and_batch(
            host,
            batch.request_id,
            batch.arrival_ns,
            batch.items,
            self.submitted,
            self.core_heap,
            p.sockets,
            p.cpu_s_per_item * 1e9,
            self.waiting,
            p.max_items,
            p.max_wait_ns,
            until_ns,
        )
        if batches.shape[1] == 0:
            return
        if self.policy is None and self.network is None:
            rows, periods, done = dispatch_and_emit(
                merged,
                batches,
                self.table.table_ns,
                self.server_free,
                p.group,
                p.sockets,
                p.accelerators_per_socket,
                self.host_ids,
                self.acc,
            )
            if done:  # one compiled call (the usual pool)
                for m in range(p.group):
                    self.ledger.add(periods[0], periods[1], periods[2] + m, periods[3])
                self.buffer.append(rows)
                return
        self._dispatch_batches(merged, batches)

    def _dispatch_batches(self, merged: np.ndarray, batches: np.ndarray) -> None:
        """Dispatch the closed batches step by step (a custom dispatch policy, remote
        embedding rows, or a batch larger than the occupancy table)."""
        p = self.p
        first, size, close = batches[B_FIRST], batches[B_SIZE], batches[B_CLOSE]
        b_unit = merged[W_UNIT, first]
        service = self.table.lookup(size)
        if self.network is None:
            net = np.zeros(len(first), dtype=np.int64)
        else:  # the batch waits for its remote embedding rows before a server takes it
            net = self.network.batch_ns(b_unit // p.sockets, size, close)
            close = close + net
        start, server = self._dispatch(b_unit, close, service)
        finish = start + service
        local0 = b_unit * p.accelerators_per_socket + server * p.group
        for m in range(p.group):
            self.ledger.add(start, finish, local0 + m, size)
        ids = (self.host_ids, self.acc)
        shape = (p.sockets, p.accelerators_per_socket)
        end = batches[B_END]
        self.buffer.append(emit_rows(merged, first, end, start, finish, net, local0, *shape, *ids))

    def _dispatch(
        self, unit: np.ndarray, close: np.ndarray, service: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """FCFS per socket in close order: (start_ns, server) per batch."""
        if self.policy is None:
            return dispatch_fcfs(unit, close, service, self.server_free)
        starts = np.zeros(len(unit), dtype=np.int64)
        servers = np.zeros(len(unit), dtype=np.int64)
        for u in np.unique(unit).tolist():  # sockets are independent queues
            rows = np.flatnonzero(unit == u)
            starts[rows], servers[rows] = fcfs_servers_policy(
                close[rows], service[rows], self.server_free[u], self.policy
            )
        return starts, servers
