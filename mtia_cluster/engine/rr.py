"""R&R host cell: preprocessing on CPU cores -> dynamic batching -> accelerators.

One host has ``sockets`` sockets; each socket is an independent scheduling unit with its own
cores and accelerators (DESIGN §2). Requests routed to the host alternate between sockets
(the host's k-th request goes to socket ``k % sockets``). On a socket:

1. preprocessing: each request takes one core for ``items x cpu_s_per_item`` (FCFS over the
   socket's cores, :func:`~mtia_cluster.engine.queueing.fcfs_pool`);
2. dynamic batching per model (:mod:`~mtia_cluster.engine.batching`);
3. dispatch: closed batches queue FCFS for the socket's servers; a server is one accelerator,
   or a shard group of ``group`` accelerators under the socket's PCIe switch (a model whose
   embeddings are split); the server free the longest takes the batch, or a custom
   :class:`~mtia_cluster.engine.queueing.DispatchPolicy` chooses;
4. the server is occupied for PCIe in + device compute + PCIe out of the batch (no overlap
   between batches on one server), after which every request of the batch completes.

All times of a request are fixed as soon as its batch closes; completions are released when
simulated time passes them, so any window cut gives the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtia_cluster.engine.batching import form_batches
from mtia_cluster.engine.cell import (
    Completed,
    DeviceCounters,
    LoadReport,
    RequestBatch,
    completed_from,
)
from mtia_cluster.engine.ledger import BusyLedger, CompletionBuffer
from mtia_cluster.engine.queueing import (
    DispatchPolicy,
    fcfs_pool,
    fcfs_servers,
    fcfs_servers_policy,
    heap_from_free,
)


@dataclass
class ServiceTable:
    """Server occupancy per batch size in ns, computed on demand from a cost function.

    ``cost_s(sizes)`` returns seconds per batch for an array of batch sizes (items); the
    table grows by doubling when a larger batch appears, so it stays exact for any size.
    """

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
    """Static description of one R&R host (shared by the hosts of a pool)."""

    sockets: int
    cores_per_socket: int
    accelerators_per_socket: int
    group: int  # accelerators per server (shard group); divides accelerators_per_socket
    max_items: int
    max_wait_ns: int
    cpu_s_per_item: float


class _Socket:
    """State of one socket: cores, waiting requests, servers."""

    def __init__(self, params: RRHostParams) -> None:
        self.core_free = np.zeros(params.cores_per_socket, dtype=np.int64)
        servers = params.accelerators_per_socket // params.group
        self.server_free = np.zeros(servers, dtype=np.int64)
        self.heap = heap_from_free(self.server_free)
        self.waiting = RequestBatch.empty()
        self.waiting_ready = np.zeros(0, dtype=np.int64)


class RRHostCell:
    """One R&R host (implements the Cell protocol)."""

    def __init__(
        self,
        *,
        params: RRHostParams,
        table: ServiceTable,
        host_id: int,
        accelerator_ids: np.ndarray,
        capacity_weight: float = 1.0,
        policy: DispatchPolicy | None = None,
    ) -> None:
        self.p = params
        self.table = table
        self.host_id = host_id
        self.accelerator_ids = np.asarray(accelerator_ids, dtype=np.int32)
        expected = params.sockets * params.accelerators_per_socket
        if len(self.accelerator_ids) != expected:
            raise ValueError(f"host needs {expected} accelerator ids")
        self.policy = policy
        self.capacity_weight = capacity_weight
        self.sockets = [_Socket(params) for _ in range(params.sockets)]
        self._ledger = BusyLedger(self.accelerator_ids)
        self._buffer = CompletionBuffer()
        self.submitted = 0

    # -- Cell protocol -------------------------------------------------------------------
    def submit(self, batch: RequestBatch) -> None:
        """Spread requests over sockets and run their preprocessing (fixed at arrival)."""
        n = len(batch)
        if n == 0:
            return
        which = (self.submitted + np.arange(n)) % self.p.sockets
        self.submitted += n
        for s, sock in enumerate(self.sockets):
            mine = batch.take(which == s) if self.p.sockets > 1 else batch
            if len(mine):
                self._preprocess(sock, mine)

    def advance(self, until_ns: int) -> Completed:
        for s, sock in enumerate(self.sockets):
            self._batch_and_dispatch(s, sock, until_ns)
        self._ledger.close(until_ns)
        return self._buffer.release(until_ns)

    def report(self) -> LoadReport:
        return LoadReport(
            outstanding=self.submitted - self._buffer.released, capacity_weight=self.capacity_weight
        )

    def device_counters(self) -> DeviceCounters:
        return self._ledger.counters()

    # -- stages ----------------------------------------------------------------------------
    def _preprocess(self, sock: _Socket, req: RequestBatch) -> None:
        if self.p.cpu_s_per_item > 0:
            cpu_ns = np.maximum(np.ceil(req.items * (self.p.cpu_s_per_item * 1e9)), 1)
            start, sock.core_free = fcfs_pool(
                req.arrival_ns, cpu_ns.astype(np.int64), sock.core_free
            )
            ready = start + cpu_ns.astype(np.int64)
        else:
            ready = req.arrival_ns
        waiting = RequestBatch.concat([sock.waiting, req])
        ready_all = np.concatenate([sock.waiting_ready, ready])
        order = np.argsort(ready_all, kind="stable")
        sock.waiting = waiting.take(order)
        sock.waiting_ready = ready_all[order]

    def _batch_and_dispatch(self, s: int, sock: _Socket, until_ns: int) -> None:
        first, end, close = form_batches(
            sock.waiting_ready, sock.waiting.items, self.p.max_items, self.p.max_wait_ns, until_ns
        )
        if len(first) == 0:
            return
        stop = int(end[-1])
        members = sock.waiting.take(slice(0, stop))
        sock.waiting = sock.waiting.take(slice(stop, None))
        sock.waiting_ready = sock.waiting_ready[stop:]
        cum = np.concatenate([[0], np.cumsum(members.items, dtype=np.int64)])
        batch_items = cum[end] - cum[first]
        service = self.table.lookup(batch_items)
        if self.policy is None:
            start, server = fcfs_servers(close, service, sock.heap)
        else:
            start, server = fcfs_servers_policy(close, service, sock.server_free, self.policy)
        finish = start + service
        sizes = end - first
        per_req = np.repeat(np.arange(len(first)), sizes)
        g = self.p.group
        local0 = s * self.p.accelerators_per_socket + server * g  # first accelerator of group
        for m in range(g):
            self._ledger.add(start, finish, (local0 + m).astype(np.int32), batch_items)
        self._buffer.add(
            completed_from(
                members,
                host_id=self.host_id,
                accelerator_id=self.accelerator_ids[local0][per_req],
                start_ns=start[per_req],
                first_token_ns=finish[per_req],
                finish_ns=finish[per_req],
                batch_size=sizes[per_req],
            )
        )
