"""Exact FCFS queue kernels over numpy arrays (int64 ns), resumable window after window.

* :func:`max_plus_scan` — one FCFS server: ``finish_i = max(arrival_i, finish_{i-1}) + s_i``.
  Unrolled, ``finish_i = S_i + max(free, max_{j<=i}(arrival_j - S_{j-1}))`` with ``S`` the
  cumulative service, so a cumulative maximum vectorizes it exactly.
* :func:`fcfs_servers` — c identical servers with identities (accelerators): a heap of
  ``(free_ns, server)`` keys packed in one int; a job takes the server that has been free the
  longest (lowest index on ties). One tight Python step per job, used per *batch* in R&R.

All take and return the servers' state so a caller can cut the job stream anywhere (window
boundaries) and get the same numbers as one long call.
"""

from __future__ import annotations

import heapq
from typing import Protocol

import numpy as np


def max_plus_scan(
    arrival_ns: np.ndarray, service_ns: np.ndarray, free_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Start and finish times of FCFS jobs on one server that is free from `free_ns`."""
    if len(arrival_ns) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    cum_s = np.cumsum(service_ns, dtype=np.int64)
    slack = np.maximum.accumulate(arrival_ns - (cum_s - service_ns))
    np.maximum(slack, free_ns, out=slack)
    finish = cum_s + slack
    return finish - service_ns, finish


class DispatchPolicy(Protocol):
    """Chooses which free server takes the next job (the R&R dispatch hook)."""

    def choose(self, free_ns: np.ndarray, start_ns: int) -> int:
        """Index of a server with ``free_ns[index] <= start_ns`` (at least one exists)."""
        ...


def server_bits(servers: int) -> int:
    """Bits that hold a server index in a heap key (see :func:`heap_from_free`)."""
    return max(1, (servers - 1).bit_length())


def fcfs_servers(
    arrival_ns: np.ndarray, service_ns: np.ndarray, heap: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """FCFS on identified servers; `heap` (from :func:`heap_from_free`) is updated in place.

    A job starts at ``max(arrival, earliest free time)`` on the server free the longest
    (lowest index on ties). Returns (start_ns, server) per job.
    """
    n = len(arrival_ns)
    starts = [0] * n
    servers = [0] * n
    bits = server_bits(len(heap))
    mask = (1 << bits) - 1
    pop_push = heapq.heapreplace
    for i, (a, s) in enumerate(zip(arrival_ns.tolist(), service_ns.tolist(), strict=True)):
        key = heap[0]
        free = key >> bits
        t = a if a > free else free
        k = key & mask
        pop_push(heap, ((t + s) << bits) | k)
        starts[i] = t
        servers[i] = k
    return np.array(starts, dtype=np.int64), np.array(servers, dtype=np.int32)


def fcfs_servers_policy(
    arrival_ns: np.ndarray, service_ns: np.ndarray, free_ns: np.ndarray, policy: DispatchPolicy
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`fcfs_servers` with a custom choice among free servers (`free_ns` in place)."""
    n = len(arrival_ns)
    starts = np.zeros(n, dtype=np.int64)
    servers = np.zeros(n, dtype=np.int32)
    for i in range(n):
        t = max(int(arrival_ns[i]), int(free_ns.min()))
        k = int(policy.choose(free_ns, t))
        if free_ns[k] > t:
            raise ValueError(f"dispatch policy chose busy server {k}")
        free_ns[k] = t + int(service_ns[i])
        starts[i] = t
        servers[i] = k
    return starts, servers


def heap_from_free(free_ns: np.ndarray) -> list[int]:
    """A heap of server keys ``free_ns << bits | server`` from per-server free times.

    One int per server orders like the tuple (free_ns, server) but compares and allocates
    much faster in the dispatch loop (about 3x).
    """
    bits = server_bits(len(free_ns))
    heap = [(int(f) << bits) | k for k, f in enumerate(free_ns)]
    heapq.heapify(heap)
    return heap
