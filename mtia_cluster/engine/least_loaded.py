"""Least-loaded selection without sorting every candidate every window (issue 18).

``least_outstanding`` sends the window's requests, in arrival order, each to the candidate
with the fewest outstanding + sent (ties: lowest index), counting it there. With k
candidates the choices are the n smallest of the keys ``(load_j + m) * k + j`` (m >= 0: the
requests already sent to j in the window), smallest first: pops of a min-heap of
``load_j * k + j`` that pushes ``key + k`` back after each pop. The keys are distinct, so any
valid heap gives the same pops. Exact shortcuts make a window cost O(k + n log m) instead
of a full sort, O(k log k + n log k):

* when at least n candidates share the lowest load, the choices are the first n of them in
  index order (no heap: the common case of a large, mostly idle fleet);
* otherwise only candidates with ``load < min(load) + n`` can receive one of n requests (a
  least loaded candidate stays below that level while the n are placed), so only those m
  enter the heap;
* the heap is built in place in O(m) (bottom-up), not by sorting;
* :func:`route_ranges` routes every router of a routing plane in one compiled call over
  contiguous cell ranges of the plane's report arrays (no per-router Python work, no copy
  of the reports per router); :func:`two_choices_ranges` does the same for ``p2c`` once
  each router has drawn its rows' two candidates.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _sift(heap: np.ndarray, hole: int, key: int) -> None:
    """Put `key` at position `hole` of the min-heap `heap` and move it down to its place
    (both subtrees below `hole` are heaps)."""
    size = heap.shape[0]
    child = 2 * hole + 1
    while child < size:
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if key <= heap[child]:
            break
        heap[hole] = heap[child]
        hole = child
        child = 2 * hole + 1
    heap[hole] = key


@njit(cache=True)
def _contenders(load: np.ndarray, n: int) -> np.ndarray:
    """Min-heap of the keys ``load_j * k + j`` of the candidates that can receive one of `n`
    requests (``load_j < min(load) + n``), built bottom-up."""
    k = load.shape[0]
    low = load.min()
    keys = np.empty(k, dtype=np.int64)
    m = 0
    for j in range(k):
        if load[j] - low < n:
            keys[m] = load[j] * k + j
            m += 1
    heap = keys[:m]
    for i in range(m // 2 - 1, -1, -1):
        _sift(heap, i, heap[i])
    return heap


@njit(cache=True)
def _fill(load: np.ndarray, rows: np.ndarray, out: np.ndarray, base: int) -> None:
    """Requests `rows` (in order) each to the least loaded candidate: ``out[row] = base +
    candidate``; the heap counts each one sent. When the least loaded level alone has a
    candidate per request (a mostly idle fleet), those are the choices, in index order."""
    k, n = load.shape[0], rows.shape[0]
    low, t = load.min(), 0
    for j in range(k):
        if t == n:
            return
        if load[j] == low:
            out[rows[t]] = base + j
            t += 1
    if t == n:
        return
    heap = _contenders(load, n)
    for i in range(n):
        key = heap[0]
        out[rows[i]] = base + key % k
        _sift(heap, 0, key + k)  # one more outstanding on the same candidate


@njit(cache=True)
def least_loaded(load: np.ndarray, n: int) -> np.ndarray:
    """Candidate index for each of `n` requests: request by request argmin of (load, index),
    each choice counted."""
    out = np.empty(n, dtype=np.int64)
    if n > 0:
        _fill(load, np.arange(n), out, 0)
    return out


@njit(cache=True)
def route_ranges(
    router: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    outstanding: np.ndarray,
    sent: np.ndarray,
    out: np.ndarray,
) -> None:
    """Least loaded routing of a window for many routers at once.

    Row i (arrival order) belongs to router ``router[i]``, whose candidates are the cells
    ``lo[r] .. hi[r] - 1`` of the plane-wide arrays `outstanding` (last reports) and `sent`
    (sent since). Writes the chosen cell of each row into `out` and counts it in `sent`:
    the same choices as routing each router's rows alone, in order."""
    n = router.shape[0]
    start = np.zeros(lo.shape[0] + 1, dtype=np.int64)
    for i in range(n):
        start[router[i] + 1] += 1
    for r in range(lo.shape[0]):
        start[r + 1] += start[r]
    order = np.empty(n, dtype=np.int64)  # rows grouped by router, arrival order kept
    fill = start[:-1].copy()
    for i in range(n):
        order[fill[router[i]]] = i
        fill[router[i]] += 1
    for r in range(lo.shape[0]):
        if start[r + 1] == start[r]:
            continue
        rows = order[start[r] : start[r + 1]]
        _fill(outstanding[lo[r] : hi[r]] + sent[lo[r] : hi[r]], rows, out, lo[r])
        for t in range(rows.shape[0]):
            sent[out[rows[t]]] += 1


@njit(cache=True)
def two_choices_ranges(
    router: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    lo: np.ndarray,
    outstanding: np.ndarray,
    sent: np.ndarray,
    out: np.ndarray,
) -> None:
    """p2c for many routers at once: row i (arrival order) of router ``router[i]`` goes to
    the less loaded (outstanding + sent; ties: the first drawn) of its candidates
    ``first[i]`` and ``second[i]`` (local indices from ``lo[router[i]]``), counted in
    `sent` at once. The routers' cells are disjoint, so rows of different routers do not
    interact: the same choices as each router alone."""
    for i in range(router.shape[0]):
        a = lo[router[i]] + first[i]
        b = lo[router[i]] + second[i]
        c = b if outstanding[b] + sent[b] < outstanding[a] + sent[a] else a
        sent[c] += 1
        out[i] = c
