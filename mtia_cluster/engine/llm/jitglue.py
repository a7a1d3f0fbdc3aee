"""Packing a replica scheduler's state into :mod:`.kernel`'s arrays and back.

Only the requests the loop can touch are packed: positions from the oldest one running,
waiting or not yet arrived (``lo``) to the last, as columns of one int64 array, with local
indices ``position - lo``. Decoders' finish heap keeps its live entries only (stale ones are
skipped by both paths). Everything the kernel changes is written back to the scheduler's
Python lists and counters, so the Python path (and the cell) can go on from there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.engine.llm import kernel as k
from mtia_cluster.engine.llm.costs import AS_PER_NS, IterationCost
from mtia_cluster.engine.llm.limits import ReplicaLimits

# a scheduler.ReplicaScheduler (not imported: scheduler imports this module)
ReplicaScheduler = Any

_IN = ((k.P, "prompt"), (k.OUT, "outputs"))
_OUT = (
    (k.C, "computed"),
    (k.G, "generated"),
    (k.OFF, "offset"),
    (k.FI, "finish_iter"),
    (k.ST, "state"),
    (k.SN, "start_ns"),
    (k.FN, "first_ns"),
    (k.EN, "finish_ns"),
    (k.BSZ, "batch_size"),
    (k.PRE, "preemptions"),
)


def kernel_tables(cost: IterationCost, limits: ReplicaLimits) -> tuple | None:
    """The kernel's cost tables and limits for this replica, or None when it must run the
    Python path: a prefix cache, scale-out network time, or coefficients so large that a
    product could pass 2**62 (:func:`.kernel.fits_kernel`)."""
    if limits.prefix_caching or cost.network_as:
        return None
    ct, mt, et = (
        np.array(t, np.int64) for t in (cost.compute_base_as, cost.memory_base_as, cost.other_as)
    )
    bases = [int(ct.max()), int(mt.max()), int(et.max())]
    cp, mc = cost.compute_per_pair_as, cost.memory_per_context_as
    cap = limits.num_blocks * limits.block_size
    budget, seqs = limits.max_num_batched_tokens, limits.max_num_seqs
    if not k.fits_kernel(bases, cp, mc, budget, seqs, cap):
        return None
    lim = np.array(
        [budget, seqs, limits.block_size, limits.num_blocks, int(limits.no_evict),
         limits.max_tokens or 0, cp, mc, int(limits.chunked_prefill)],
        np.int64,
    )  # fmt: skip
    return ct, mt, et, lim


def _lowest(sched: ReplicaScheduler) -> int:
    """The oldest position the loop can touch (len(prompt): none)."""
    lo = len(sched.prompt)
    if sched._next < len(sched._stream):
        lo = sched._stream[sched._next]
    if sched.running:
        lo = min(lo, min(sched.running))
    if sched.waiting:
        lo = min(lo, min(sched.waiting))
    return lo


def _scalars(sched: ReplicaScheduler) -> np.ndarray:
    s = np.zeros(k.NSCALAR, np.int64)
    s[k.T_NS], s[k.T_REM] = divmod(sched.t_as, AS_PER_NS)
    s[k.LE_NS], s[k.LE_REM] = divmod(sched.last_end_as, AS_PER_NS)
    s[k.IT], s[k.MAXUSED], s[k.RESERVED] = (
        sched.iteration,
        sched.max_used_blocks,
        sched.reserved_blocks,
    )
    s[k.LASTMEM], s[k.TOKENS] = int(sched.last_memory), sched.tokens_done
    s[k.QUERIED], s[k.PREEMPTED] = sched.queried_tokens, sched.preempted
    s[k.HELD], s[k.MAXKV], s[k.FREE] = sched.kv_held_tokens, sched.max_kv_tokens, sched.kv.free
    s[k.NDEC], s[k.OFFSUM] = sched.n_dec, sched.offset_sum
    return s


def _pack(sched: ReplicaScheduler, lo: int) -> tuple[np.ndarray, np.ndarray]:
    """(request columns, scalars) of positions lo.. with the running/prefilling lists."""
    m = len(sched.prompt) - lo
    req = np.full((k.NCOL, m), -1, np.int64)
    for row, name in (*_IN, *_OUT):
        req[row] = np.array(getattr(sched, name)[lo:], np.int64)  # faster than from a list
    s = _scalars(sched)
    for nxt, prv, head, tail, members in (
        (k.RN, k.RP, k.RHEAD, k.RTAIL, sched.running),
        (k.PN, k.PP, k.PHEAD, k.PTAIL, sched.prefilling),
    ):
        order = [r - lo for r in members]
        s[head], s[tail] = (order[0], order[-1]) if order else (-1, -1)
        req[nxt, order[:-1]] = order[1:]
        req[prv, order[1:]] = order[:-1]
    s[k.NRUN], s[k.NPREF] = len(sched.running), len(sched.prefilling)
    return req, s


def _heap(sched: ReplicaScheduler, lo: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The finish heap's live entries (local), room to grow, and the scalars' count."""
    state, fi = sched.state, sched.finish_iter
    live = [(f, r - lo) for f, r in sched._heap if state[r] == k.DECODE and fi[r] == f]
    size = max(2 * len(live), 2 * sched.limits.max_num_seqs + 64)
    hf, hr = np.zeros(size, np.int64), np.zeros(size, np.int64)
    for i, (f, r) in enumerate(sorted(live)):  # a sorted array is a heap
        hf[i], hr[i] = f, r
    return hf, hr, len(live)


def lowest_position(sched: ReplicaScheduler) -> int:
    """The oldest position the loop can touch (len(prompt): none)."""
    return _lowest(sched)


def pack(sched: ReplicaScheduler, lo: int) -> tuple[np.ndarray, ...]:
    """The state of positions lo.. as the kernel's arrays: (request columns, scalars, heap
    keys, heap positions, residues, waiting ring, stream positions, stream arrivals); the
    ring has one slot per packed request, the scalars' finished count starts at 0."""
    m = len(sched.prompt) - lo
    req, s = _pack(sched, lo)
    hf, hr, s[k.HEAPN] = _heap(sched, lo)
    wait = np.zeros(m, np.int64)
    s[k.WCOUNT] = len(sched.waiting)
    wait[: len(sched.waiting)] = [r - lo for r in sched.waiting]
    nxt = sched._next
    stream_r = np.array(sched._stream[nxt:], np.int64) - lo
    stream_ns = np.array([a // AS_PER_NS for a in sched._stream_as[nxt:]], np.int64)
    res = np.array(sched.residue_count, np.int64)
    return req, s, hf, hr, res, wait, stream_r, stream_ns


def run_compiled(sched: ReplicaScheduler, tables: tuple, until_ns: int | None) -> None:
    """``sched.run_until(until_ns)`` through the kernel (see module doc)."""
    lo = _lowest(sched)
    m = len(sched.prompt) - lo
    if m <= 0:
        return
    req, s, hf, hr, res, wait, stream_r, stream_ns = pack(sched, lo)
    fin = np.zeros(m, np.int64)
    ct, mt, et, lim = tables
    until = -1 if until_ns is None else until_ns
    k.run_kernel(ct, mt, et, lim, req, s, hf, hr, res, wait, fin, stream_r, stream_ns, until)
    unpack(sched, lo, req, s, (hf, hr, res, wait, fin), accumulated(sched))


def accumulated(sched: ReplicaScheduler) -> tuple[int, int, int]:
    """The sums the kernel adds to from 0 (busy, memory-bound, KV token-attoseconds)."""
    return sched.busy_as, sched.memory_as, sched.kv_token_as


def unpack(
    sched: ReplicaScheduler,
    lo: int,
    req: np.ndarray,
    s: np.ndarray,
    arrays: tuple,
    base: tuple[int, int, int],
) -> None:
    """Write the kernel's arrays back into `sched` (positions lo.., `req` one column per
    position): lists, queues, heap, finished requests and scalars; `base`: the
    `accumulated` sums at packing."""
    hf, hr, res, wait, fin = arrays
    for row, name in _OUT:
        getattr(sched, name)[lo:] = req[row].tolist()
    sv = s.tolist()
    _queues(sched, req, sv, wait, hf, hr, lo)
    sched.finished += (fin[: sv[k.NFIN]] + lo).tolist()
    sched._next += sv[k.NEXT]
    sched.residue_count = res.tolist()
    set_scalars(sched, sv, base)
    sched._resume = (-1, 0)


def _queues(
    sched: ReplicaScheduler,
    req: np.ndarray,
    sv: list[int],
    wait: np.ndarray,
    hf: np.ndarray,
    hr: np.ndarray,
    off: int,
) -> None:
    """The scheduler's running and prefilling lists, waiting queue and event heap from the
    packed arrays, positions shifted by `off` (packed position + off = scheduler's)."""
    sched.running = dict.fromkeys(_walk(req[k.RN].tolist(), sv[k.RHEAD], off))
    sched.prefilling = dict.fromkeys(_walk(req[k.PN].tolist(), sv[k.PHEAD], off))
    m, head = len(wait), sv[k.WHEAD]
    sched.waiting.clear()
    sched.waiting.extend(int(wait[(head + i) % m]) + off for i in range(sv[k.WCOUNT]))
    n = sv[k.HEAPN]
    sched._heap = list(zip(hf[:n].tolist(), (hr[:n] + off).tolist(), strict=True))


def unpack_compacted(
    sched: ReplicaScheduler,
    cut: int,
    lo: int,
    packed: tuple[np.ndarray, np.ndarray, np.ndarray, tuple, tuple],
    base: tuple[int, int, int],
    sessions: list[int],
) -> tuple[int, int, int]:
    """`unpack` for the compiled fleet (engine/llm/fleet.py), which also queued requests
    there: `packed` (request columns of positions lo.., scalars, rejected flags, the arrays
    `unpack` takes, the stream's positions and arrival ns) covers them, `sessions` are the
    session ids of those not yet in `sched` (positions ``len(sched.prompt)``..). Positions
    below `cut` (finished and returned: what ``LLMReplicaCell._compact`` may drop) are
    forgotten as ``drop_prefix(cut)`` forgets them, without being written first. Returns
    the dropped requests' (preemptions, cached tokens, prompt tokens) sums."""
    req, s, rej, (hf, hr, res, wait, fin), (sr, sns) = packed
    old, c = len(sched.prompt), max(0, cut - lo)
    dropped = (
        sum(sched.preemptions[: min(cut, lo)]) + int(req[k.PRE, :c].sum()),
        sum(sched.cached_tokens[: min(cut, old)]),
        sum(sched.prompt[: min(cut, lo)]) + int(req[k.P, :c].sum()),
    )
    for row, name in (*_IN, *_OUT):
        lst = getattr(sched, name)
        lst[:] = lst[cut:lo] + req[row, c:].tolist()
    sched.rejected[:] = sched.rejected[cut:lo] + (rej[c:] != 0).tolist()
    fresh = lo + req.shape[1] - max(cut, old)  # queued in the span, kept
    sched.session[:] = sched.session[cut:old] + sessions[len(sessions) - fresh :]
    for lst, zero in ((sched.keys, None), (sched.cached_tokens, 0), (sched.net_as, 0)):
        lst[:] = lst[cut:old] + [zero] * fresh
    sv, off = s.tolist(), lo - cut
    _queues(sched, req, sv, wait, hf, hr, off)
    done = [*sched.finished, *(fin[: sv[k.NFIN]] + lo).tolist()]
    sched.finished = [r - cut for r in done if r >= cut]
    nxt = sv[k.NEXT]  # the stream entries not yet queued; arrivals as add_many has them
    sched._stream = (sr[nxt:] + off).tolist()
    sched._stream_as = [a * AS_PER_NS for a in sns[nxt:].tolist()]
    sched._next = 0
    sched.residue_count = res.tolist()
    set_scalars(sched, sv, base)
    sched._resume = (-1, 0)
    return dropped


def set_scalars(sched: ReplicaScheduler, sv: list[int], base: tuple[int, int, int]) -> None:
    """The kernel's scalars `sv` (``s.tolist()``) into `sched`: clocks, counters, KV
    figures and decoder aggregates (all that a replica's device counters read)."""
    sched.t_as = sv[k.T_NS] * AS_PER_NS + sv[k.T_REM]
    sched.last_end_as = sv[k.LE_NS] * AS_PER_NS + sv[k.LE_REM]
    sched.iteration, sched.max_used_blocks = sv[k.IT], sv[k.MAXUSED]
    sched.reserved_blocks, sched.last_memory = sv[k.RESERVED], bool(sv[k.LASTMEM])
    sched.tokens_done, sched.queried_tokens = sv[k.TOKENS], sv[k.QUERIED]
    sched.preempted, sched.kv_held_tokens = sv[k.PREEMPTED], sv[k.HELD]
    sched.max_kv_tokens, sched.kv.free = sv[k.MAXKV], sv[k.FREE]
    sched.n_dec, sched.offset_sum = sv[k.NDEC], sv[k.OFFSUM]
    sched.busy_as = base[0] + sv[k.BUSY_NS] * AS_PER_NS + sv[k.BUSY_REM]
    sched.memory_as = base[1] + sv[k.MEM_NS] * AS_PER_NS + sv[k.MEM_REM]
    sched.kv_token_as = base[2] + (sv[k.KV_HI] << 31) + sv[k.KV_LO]


def _walk(nxt: list[int], head: int, lo: int) -> list[int]:
    """Positions of a linked list's members in order."""
    out = []
    while head >= 0:
        out.append(head + lo)
        head = nxt[head]
    return out
