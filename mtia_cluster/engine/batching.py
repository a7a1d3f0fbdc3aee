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
