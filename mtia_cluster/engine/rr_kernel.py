"""Compiled (numba) kernels of the R&R host pipeline: one pass per window, exact.

The per-host semantics are those of :mod:`mtia_cluster.engine.rr` (and of the event-by-event
oracle in ``tests/engine/reference_rr.py``); these loops only make them fast. A window's work
is three calls:

1. :func:`admit_and_batch` — new requests get their socket (the host's k-th request goes to
   socket ``k % sockets``) and their preprocessing (FCFS on the socket's cores, a min-heap of
   core free times per socket); they are merged into the waiting rows, kept sorted by
   (socket, ready_ns) with earlier arrivals first on ties; then each socket's batches are
   chained from its first waiting row while they close before the window bound. The cost
   follows the rows (a counting sort over the sockets only when the rows outnumber them).
2. :func:`dispatch_fcfs` — closed batches, in close order per socket, start at
   ``max(close, earliest free server)`` on the server free the longest (lowest index on ties).
   A custom dispatch policy replaces only this step (in Python).
3. :func:`emit_rows` — one output row per dispatched request, ordered by finish time (batch
   order on ties), so that the completion buffer can release a prefix per window.

Batching rule (a batch opened by the first waiting row at ``ready``): later rows join while
they are ready strictly before ``ready + max_wait_ns`` and their items fit; the batch closes
at the deadline, at the moment it is exactly full, or when a row that does not fit becomes
ready (that row opens the next batch); a first row of ``max_items`` or more closes at once.
Only batches closing before ``until_ns`` are formed: every row ready before the bound is
already waiting, so later windows cannot change them.

Compiled with ``cache=True``: the first import in a fresh environment compiles for a few
seconds and stores the machine code next to this file (``__pycache__``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def heap_replace(heap: np.ndarray, value: int) -> None:
    """Replace the minimum of the min-heap `heap` (a 1-D int64 view) by `value`."""
    n = heap.shape[0]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= value:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = value


@njit(cache=True, nogil=True)
def core_start(row, a, cpu, cores):
    """Start of a preprocessing job arriving at `a` that takes `cpu` ns on one of `cores`
    cores, FCFS (the earliest free core). `row` is the socket's core state: ``row[0]`` busy
    cores, ``row[1]`` the latest arrival so far, the busy cores' free times a min-heap in
    ``row[2:]``. Arrivals on a socket never go back in time (a window's rows come in arrival
    order, later windows later, retried requests at the failure's window start; checked),
    so a core free by `a` is free for every later job too: it leaves the heap. A mostly idle
    socket then touches one cache line instead of a heap of all its cores; the start times
    are those of a heap of every core's free time (tests/engine/test_rr_cell.py, golden)."""
    if a < row[1]:
        raise ValueError("arrivals on a socket went back in time")
    row[1] = a
    nb = row[0]
    heap = row[2:]
    while nb > 0 and heap[0] <= a:
        nb -= 1
        if nb > 0:
            heap_replace(heap[:nb], heap[nb])
    if nb < cores:
        t = a
        v = t + cpu
        i = nb
        while i > 0:
            parent = (i - 1) // 2
            if heap[parent] <= v:
                break
            heap[i] = heap[parent]
            i = parent
        heap[i] = v
        nb += 1
    else:
        t = heap[0]
        heap_replace(heap[:nb], t + cpu)
    row[0] = nb
    return t


@njit(cache=True, nogil=True)
def _admit(host, arrival, items, submitted, core_heap, sockets, cpu_ns_per_item):
    """Socket and ready time of each new request (rows in arrival order)."""
    n = arrival.shape[0]
    unit = np.empty(n, dtype=np.int64)
    ready = np.empty(n, dtype=np.int64)
    cores = core_heap.shape[1] - 2
    for i in range(n):
        h = host[i]
        u = h * sockets + submitted[h] % sockets
        submitted[h] += 1
        unit[i] = u
        if cpu_ns_per_item > 0.0:
            cpu = np.int64(max(np.ceil(items[i] * cpu_ns_per_item), 1.0))
            ready[i] = core_start(core_heap[u], arrival[i], cpu, cores) + cpu
        else:
            ready[i] = arrival[i]
    return unit, ready


_INSERTION_MAX = 64  # rows per socket per window sorted by insertion


@njit(cache=True, nogil=True)
def _by_unit(unit, units):
    """Row indices in a stable order by unit: a counting sort when the rows outnumber the
    units (dense traffic), else a merge sort, so the cost follows the rows, never the
    number of idle sockets in the group."""
    n = unit.shape[0]
    if n < units:
        return np.argsort(unit, kind="mergesort")
    counts = np.zeros(units + 1, dtype=np.int64)
    for i in range(n):
        counts[unit[i] + 1] += 1
    for u in range(units):
        counts[u + 1] += counts[u]
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[counts[unit[i]]] = i
        counts[unit[i]] += 1
    return order


@njit(cache=True, nogil=True)
def _sorted_order(unit, ready, units):
    """Stable order of rows by (unit, ready): a stable sort by unit (rows keep arrival
    order), then an insertion sort by ready inside each unit's run. Ready times within a
    socket are nearly in arrival order (they differ only by preprocessing), so the insertion
    sort does little work (a longer run is merge-sorted); both are stable, as the batching
    rule needs (earlier arrival first on ties)."""
    n = unit.shape[0]
    order = _by_unit(unit, units)
    lo = 0
    while lo < n:
        hi = lo + 1
        while hi < n and unit[order[hi]] == unit[order[lo]]:
            hi += 1
        if hi - lo > _INSERTION_MAX:  # long runs: mergesort (stable), no n^2
            seg = order[lo:hi].copy()
            order[lo:hi] = seg[np.argsort(ready[seg], kind="mergesort")]
        else:
            for j in range(lo + 1, hi):
                row = order[j]
                key = ready[row]
                k = j - 1
                while k >= lo and ready[order[k]] > key:
                    order[k + 1] = order[k]
                    k -= 1
                order[k + 1] = row
        lo = hi
    return order


@njit(cache=True, nogil=True)
def count_rows(counts, index):
    """counts[index[i]] += 1 for every i (in place): released requests per host."""
    for i in range(index.shape[0]):
        counts[index[i]] += 1


# rows of the waiting matrix (int64, one column per request, sorted by (unit, ready_ns))
W_ID, W_ARR, W_ITEMS, W_READY, W_UNIT = range(5)
# rows of the batch matrix: first merged row, end row, close_ns, items
B_FIRST, B_END, B_CLOSE, B_SIZE = range(4)


@njit(cache=True, nogil=True)
def admit_and_batch(
    host,
    request_id,
    arrival,
    items,
    submitted,
    core_heap,
    sockets,
    cpu_ns_per_item,
    waiting,
    max_items,
    max_wait_ns,
    until_ns,
):
    """Admit new rows, merge them into the waiting rows and form the closed batches.

    `waiting` is the waiting matrix (rows ``W_*``). Returns (the merged matrix, the batch
    matrix (rows ``B_*``) of the batches closed before `until_ns`, the merged columns still
    waiting: the next waiting matrix). Three arrays, not a dozen: every array handed back
    to Python costs a boxing. `submitted` and `core_heap` are updated in place.
    """
    unit, ready = _admit(host, arrival, items, submitted, core_heap, sockets, cpu_ns_per_item)
    order = _sorted_order(unit, ready, core_heap.shape[0])
    n_old = waiting.shape[1]
    w_unit, w_ready = waiting[W_UNIT], waiting[W_READY]
    m = n_old + order.shape[0]
    merged = np.empty((5, m), dtype=np.int64)
    i = j = 0
    for k in range(m):  # merge; old rows first on equal (unit, ready)
        take_old = j >= order.shape[0]
        if not take_old and i < n_old:
            o = order[j]
            take_old = w_unit[i] < unit[o] or (w_unit[i] == unit[o] and w_ready[i] <= ready[o])
        if take_old:
            for c in range(5):
                merged[c, k] = waiting[c, i]
            i += 1
        else:
            o = order[j]
            merged[W_ID, k], merged[W_ARR, k], merged[W_ITEMS, k] = (
                request_id[o],
                arrival[o],
                items[o],
            )
            merged[W_READY, k], merged[W_UNIT, k] = ready[o], unit[o]
            j += 1
    first, end, close, size, keep = _chain(
        merged[W_READY], merged[W_ITEMS], merged[W_UNIT], max_items, max_wait_ns, until_ns
    )
    batches = np.empty((4, first.shape[0]), dtype=np.int64)
    batches[B_FIRST], batches[B_END], batches[B_CLOSE], batches[B_SIZE] = first, end, close, size
    rest = np.empty((5, keep.shape[0]), dtype=np.int64)
    for c in range(5):
        for r in range(keep.shape[0]):
            rest[c, r] = merged[c, keep[r]]
    return merged, batches, rest


@njit(cache=True, nogil=True)
def _chain(ready, items, unit, max_items, max_wait_ns, until_ns):
    """Batches closed before `until_ns`, chained per unit from its first row; rows left."""
    m = ready.shape[0]
    first = np.empty(m, dtype=np.int64)
    end = np.empty(m, dtype=np.int64)
    close = np.empty(m, dtype=np.int64)
    size = np.empty(m, dtype=np.int64)
    keep = np.empty(m, dtype=np.int64)
    nb = nk = 0
    seg = 0
    while seg < m:
        seg_end = seg + 1
        while seg_end < m and unit[seg_end] == unit[seg]:
            seg_end += 1
        k = seg
        while k < seg_end:
            deadline = ready[k] + max_wait_ns
            total = np.int64(items[k])
            e = k + 1
            c = ready[k] if total >= max_items else deadline
            if total < max_items:
                while e < seg_end and ready[e] < deadline:
                    if total + items[e] > max_items:
                        c = ready[e]  # a row that does not fit closes the batch
                        break
                    total += items[e]
                    e += 1
                    if total == max_items:
                        c = ready[e - 1]  # exactly full
                        break
            if c >= until_ns:
                break
            first[nb], end[nb], close[nb], size[nb] = k, e, c, total
            nb += 1
            k = e
        for r in range(k, seg_end):
            keep[nk] = r
            nk += 1
        seg = seg_end
    return first[:nb], end[:nb], close[:nb], size[:nb], keep[:nk]


def form_batches(
    ready_ns: np.ndarray, items: np.ndarray, max_items: int, max_wait_ns: int, until_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One queue's batches closed before `until_ns`: (first row, end row, close_ns) arrays.

    `ready_ns` must be sorted and hold every row ready before `until_ns`.
    """
    unit = np.zeros(len(ready_ns), dtype=np.int64)
    first, end, close, _, _ = _chain(ready_ns, items, unit, max_items, max_wait_ns, until_ns)
    return first, end, close


@njit(cache=True, nogil=True)
def dispatch_fcfs(unit, close, service_ns, server_free):
    """Start time and server of each batch (close order per unit); `server_free` in place."""
    n = unit.shape[0]
    start = np.empty(n, dtype=np.int64)
    server = np.empty(n, dtype=np.int64)
    servers = server_free.shape[1]
    for b in range(n):
        u = unit[b]
        best = 0
        for s in range(1, servers):
            if server_free[u, s] < server_free[u, best]:
                best = s
        t = close[b] if close[b] > server_free[u, best] else server_free[u, best]
        server_free[u, best] = t + service_ns[b]
        start[b] = t
        server[b] = best
    return start, server


# rows of the dispatched-rows matrix (int64, one column per request, sorted by finish)
R_ID, R_ARR, R_ITEMS, R_HOST, R_ACC, R_START, R_FINISH, R_SIZE, R_NET, R_LOCAL = range(10)


@njit(cache=True, nogil=True)
def emit_rows(
    merged,
    first,
    end,
    start,
    finish,
    net,
    acc_local,
    sockets,
    accelerators_per_socket,
    host_ids,
    acc_ids,
):
    """The dispatched batches' requests as one matrix (rows ``R_*``: request_id,
    arrival_ns, items, host_id, accelerator_id, start_ns, finish_ns, batch_size, network_ns
    (the batch's `net`), local host), ordered by (finish, batch order). `merged`: the
    waiting-row matrix the batches index (rows ``W_*``)."""
    order = np.argsort(finish, kind="mergesort")
    n = 0
    for b in range(first.shape[0]):
        n += end[b] - first[b]
    rows = np.empty((10, n), dtype=np.int64)
    k = 0
    per_host = sockets * accelerators_per_socket
    for b in order:
        local_host = acc_local[b] // per_host
        for r in range(first[b], end[b]):
            rows[R_ID, k], rows[R_ARR, k] = merged[W_ID, r], merged[W_ARR, r]
            rows[R_ITEMS, k] = merged[W_ITEMS, r]
            rows[R_HOST, k] = host_ids[local_host]
            rows[R_ACC, k] = acc_ids[acc_local[b]]
            rows[R_START, k], rows[R_FINISH, k] = start[b], finish[b]
            rows[R_SIZE, k] = end[b] - first[b]
            rows[R_NET, k] = net[b]
            rows[R_LOCAL, k] = local_host
            k += 1
    return rows


@njit(cache=True, nogil=True)
def dispatch_and_emit(
    merged,
    batches,
    table_ns,
    server_free,
    group,
    sockets,
    accelerators_per_socket,
    host_ids,
    acc_ids,
):
    """Steps 2 and 3 in one call for the usual pool (FCFS dispatch, every table local,
    every batch within the occupancy table): each closed batch's occupancy from
    `table_ns`, its start and server (:func:`dispatch_fcfs`, `server_free` in place) and
    its rows (:func:`emit_rows`). Returns the rows and the busy periods of the batches
    (rows start, finish, first local accelerator, items: the ledger's, per accelerator
    of the shard group from the first) and True; nothing done and False when a batch is
    larger than the table (the caller costs it in Python)."""
    first, close, size = batches[B_FIRST], batches[B_CLOSE], batches[B_SIZE]
    nb = first.shape[0]
    service = np.empty(nb, dtype=np.int64)
    unit = np.empty(nb, dtype=np.int64)
    for b in range(nb):
        if size[b] >= table_ns.shape[0]:
            return np.zeros((10, 0), np.int64), np.zeros((4, 0), np.int64), False
        service[b] = table_ns[size[b]]
        unit[b] = merged[W_UNIT, first[b]]
    start, server = dispatch_fcfs(unit, close, service, server_free)
    periods = np.empty((4, nb), dtype=np.int64)
    for b in range(nb):
        periods[0, b] = start[b]
        periods[1, b] = start[b] + service[b]
        periods[2, b] = unit[b] * accelerators_per_socket + server[b] * group
        periods[3, b] = size[b]
    net = np.zeros(nb, dtype=np.int64)
    rows = emit_rows(
        merged,
        first,
        batches[B_END],
        periods[0],
        periods[1],
        net,
        periods[2],
        sockets,
        accelerators_per_socket,
        host_ids,
        acc_ids,
    )
    return rows, periods, True
