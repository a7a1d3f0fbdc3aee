"""Synthetic service-time cells: c identical servers, batch size 1, FCFS, no host or PCIe.

Service times are drawn per request, in submission order, from the cell's own stream
(deterministic, exponential or lognormal with a given mean and coefficient of variation),
so that the engine can be checked against queueing theory (M/M/1, M/D/1, M/M/c).
"""

from __future__ import annotations

import math

import numpy as np

from mtia_cluster.engine.cell import (
    Completed,
    DeviceCounters,
    LoadReport,
    RequestBatch,
    completed_from,
    make_requests,
)
from mtia_cluster.engine.ledger import BusyLedger, CompletionBuffer
from mtia_cluster.engine.queueing import fcfs_servers, heap_from_free, max_plus_scan

DISTRIBUTIONS = ("deterministic", "exponential", "lognormal")


def draw_service_ns(
    rng: np.random.Generator, distribution: str, mean_s: float, cv: float, n: int
) -> np.ndarray:
    """`n` service times in int64 ns (rounded up, so at least 1 ns)."""
    if distribution == "deterministic":
        seconds = np.full(n, mean_s)
    elif distribution == "exponential":
        seconds = rng.standard_exponential(n) * mean_s
    elif distribution == "lognormal":
        sigma2 = math.log1p(cv * cv)
        seconds = np.exp(rng.standard_normal(n) * math.sqrt(sigma2)) * (
            mean_s * math.exp(-sigma2 / 2)
        )
    else:
        raise ValueError(f"unknown distribution {distribution!r}")
    return np.maximum(np.ceil(seconds * 1e9).astype(np.int64), 1)


class SyntheticCell:
    """c FCFS servers with random service times (implements the Cell protocol)."""

    def __init__(
        self,
        *,
        accelerator_ids: np.ndarray,
        host_id: int,
        rng: np.random.Generator,
        distribution: str,
        mean_s: float,
        cv: float = 1.0,
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {distribution!r}")
        self.accelerator_ids = np.asarray(accelerator_ids, dtype=np.int32)
        self.servers = len(self.accelerator_ids)
        self.host_id = host_id
        self.rng = rng
        self.distribution = distribution
        self.mean_s = mean_s
        self.cv = cv
        self._free_ns = 0
        self._heap = heap_from_free(np.zeros(self.servers, dtype=np.int64))
        self._ledger = BusyLedger(self.accelerator_ids)
        self._buffer = CompletionBuffer()
        self.submitted = 0

    def submit(self, batch: RequestBatch) -> None:
        """Serve the batch's requests FCFS (their times are fixed at arrival)."""
        n = len(batch)
        if n == 0:
            return
        self.submitted += n
        service = draw_service_ns(self.rng, self.distribution, self.mean_s, self.cv, n)
        if self.servers == 1:
            start, finish = max_plus_scan(batch.arrival_ns, service, self._free_ns)
            self._free_ns = int(finish[-1])
            server = np.zeros(n, dtype=np.int32)
        else:
            start, server = fcfs_servers(batch.arrival_ns, service, self._heap)
            finish = start + service
        self._ledger.add(start, finish, server, np.ones(n, dtype=np.int64))
        self._buffer.add(
            completed_from(
                batch,
                host_id=self.host_id,
                accelerator_id=self.accelerator_ids[server],
                start_ns=start,
                first_token_ns=finish,
                finish_ns=finish,
            )
        )

    def advance(self, until_ns: int) -> Completed:
        self._ledger.close(until_ns)
        return self._buffer.release(until_ns)

    def evict(self, at_ns: int) -> RequestBatch:
        """The cell fails at `at_ns` (right after ``advance(at_ns)``): the requests it still
        holds leave it (arrival order) and its servers restart free."""
        rows = self._buffer.release(np.iinfo(np.int64).max)  # everything not yet released
        self._buffer.released -= len(rows)
        self.submitted -= len(rows)
        self._free_ns = at_ns
        self._heap = heap_from_free(np.full(self.servers, at_ns, dtype=np.int64))
        self._ledger.truncate(np.arange(self.servers), at_ns)
        rows = rows.take(np.lexsort((rows.request_id, rows.arrival_ns)))
        return make_requests(
            rows.arrival_ns,
            request_id=rows.request_id,
            service=rows.service,
            region=rows.region,
            items=rows.items,
        )

    def report(self) -> LoadReport:
        return LoadReport(
            outstanding=self.submitted - self._buffer.released,
            capacity_weight=float(self.servers) / self.mean_s,
        )

    def device_counters(self) -> DeviceCounters:
        return self._ledger.counters()
