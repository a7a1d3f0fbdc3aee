"""Dynamic batching (max items per batch, max wait), vectorized and resumable.

Rule, for requests ordered by the time they leave host preprocessing (``ready_ns``):

* the first waiting request opens a batch; later requests join while their ``ready_ns`` is
  before ``open + max_wait_ns`` and the items still fit in ``max_items``;
* the batch closes at the earliest of: the deadline ``open + max_wait_ns``; the moment it is
  exactly full; the arrival of a request that does not fit (which opens the next batch);
* a single request larger than ``max_items`` forms a batch of its own, closed at once.

For every candidate opener ``i`` the end and close time are computed with two searchsorted
calls (timeout and item limit); the actual batches are the chain ``0 -> end[0] -> ...``, a
tight loop over batches (not requests). Only batches closed before ``until_ns`` are returned;
the rest stay waiting, so a caller can cut time anywhere and get the same batches.
"""

from __future__ import annotations

import numpy as np

_NEVER = np.iinfo(np.int64).max


def close_times(
    ready_ns: np.ndarray, items: np.ndarray, max_items: int, max_wait_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each i, the end index (exclusive) and close time of a batch opened by request i.

    Close time is ``_NEVER`` when neither the deadline nor the item limit can be known from
    these requests (the size limit would need a later request). The caller compares the
    deadline with its time bound.
    """
    n = len(ready_ns)
    idx = np.arange(n)
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(items, out=cum[1:])
    # k: first prefix index with cum[k] > cum[i] + max_items; members by size are i..k-2.
    k = np.searchsorted(cum, cum[:-1] + max_items, side="right")
    size_end = np.maximum(k - 1, idx + 1)
    exact = (k - 1 > idx) & (cum[np.minimum(k - 1, n)] == cum[:-1] + max_items)
    oversize = k - 1 == idx
    overflow_seen = size_end < n
    size_close = np.full(n, _NEVER, dtype=np.int64)
    padded = np.append(ready_ns, _NEVER)
    size_close = np.where(overflow_seen, padded[np.minimum(size_end, n)], size_close)
    size_close = np.where(exact, ready_ns[np.maximum(size_end - 1, 0)], size_close)
    size_close = np.where(oversize, ready_ns, size_close)
    deadline = ready_ns + max_wait_ns
    time_end = np.maximum(np.searchsorted(ready_ns, deadline, side="left"), idx + 1)
    by_size = size_close < deadline
    end = np.where(by_size, size_end, time_end)
    close = np.where(by_size, size_close, deadline)
    return end, close


def form_batches(
    ready_ns: np.ndarray, items: np.ndarray, max_items: int, max_wait_ns: int, until_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batches closed before `until_ns`, as (first index, end index, close_ns) arrays.

    `ready_ns` must be sorted and contain every request ready before `until_ns` (and may
    contain later ones). Requests from the returned last end index on are still waiting.
    """
    n = len(ready_ns)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    end, close = close_times(ready_ns, items, max_items, max_wait_ns)
    end_l = end.tolist()
    closed = (close < until_ns).tolist()
    firsts: list[int] = []
    i = 0
    while i < n and closed[i]:
        firsts.append(i)
        i = end_l[i]
    f = np.array(firsts, dtype=np.int64)
    return f, end[f], close[f]


def close_times_segmented(
    ready_ns: np.ndarray,
    items: np.ndarray,
    seg_end: np.ndarray,
    max_items: int,
    max_wait_ns: int,
    until_ns: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`close_times` for many queues at once.

    Rows are sorted by (queue, ready_ns); ``seg_end[i]`` is the end (exclusive) of row i's
    queue. Batches never cross a queue boundary. Close times at or after `until_ns` are only
    known to be "not before until_ns" (the caller needs no more).
    """
    n = len(ready_ns)
    idx = np.arange(n)
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(items, out=cum[1:])
    e = np.searchsorted(cum, cum[:-1] + max_items, side="right") - 1  # first excluded by size
    in_seg = e <= seg_end
    e_c = np.minimum(e, seg_end)
    exact = (e > idx) & in_seg & (cum[e_c] == cum[:-1] + max_items)
    overflow = (e > idx) & (e < seg_end) & ~exact
    padded = np.append(ready_ns, _NEVER)
    size_close = np.where(overflow, padded[e_c], _NEVER)
    size_close = np.where(exact, ready_ns[np.maximum(e_c - 1, 0)], size_close)
    oversize = e == idx
    size_close = np.where(oversize, ready_ns, size_close)
    size_end = np.where(oversize, idx + 1, e_c)
    # timeout: first row of the same queue ready at or after the deadline; compare within
    # the queue with a composite key (queue rank x span + time clipped to until_ns).
    deadline = ready_ns + max_wait_ns
    if n:
        base = int(ready_ns.min())
        span = max(until_ns - base, 0) + 1
        seg_rank = np.cumsum(np.concatenate(([True], seg_end[1:] != seg_end[:-1]))) - 1
        key = seg_rank * span + (np.minimum(ready_ns, until_ns) - base)
        dkey = seg_rank * span + (np.minimum(deadline, until_ns) - base)
        time_end = np.searchsorted(key, dkey, side="left")
    else:
        time_end = idx
    time_end = np.clip(time_end, idx + 1, seg_end)
    by_size = size_close < deadline
    return np.where(by_size, size_end, time_end), np.where(by_size, size_close, deadline)


def chain_segments(
    seg_starts: list[int], seg_ends: list[int], end: np.ndarray, closed: np.ndarray
) -> tuple[list[int], list[int]]:
    """Batch openers per queue, following ``end`` from each queue's first row while the
    batch is closed. Returns (openers, first still-waiting row of each queue)."""
    end_l = end.tolist()
    closed_l = closed.tolist()
    firsts: list[int] = []
    stops: list[int] = []
    for i, stop in zip(seg_starts, seg_ends, strict=True):
        while i < stop and closed_l[i]:
            firsts.append(i)
            i = end_l[i]
        stops.append(i)
    return firsts, stops
