"""The replica scheduler's main loop as one compiled function (replicas without a prefix cache).

:meth:`~.scheduler.ReplicaScheduler.run_until` runs this loop when the replica has no prefix
cache and no scale-out network time: the same statements as the scheduler's Python methods
(arrival intake, closed-form decode runs, one-iteration planning with chunked prefill,
FCFS admission, ``guaranteed_no_evict`` reservations, preemption by recompute, the finish
heap), over numpy arrays instead of Python objects. :mod:`.jitglue` packs the scheduler's
state into these arrays and unpacks the result; Hypothesis tests check the compiled path
against the Python path and the one-iteration reference (bit-identical outcomes, clocks,
KV statistics).

numba's int64 cannot hold the attosecond clock past 9.22 s nor the KV token-attosecond
integral (~1e26 on a one-hour trace), so:

* clocks and busy/memory-bound sums are split: whole nanoseconds plus an attosecond
  remainder below 1e9 (an arrival or window bound, whole nanoseconds, compares with the
  nanosecond part alone);
* the KV token integral is a pair ``hi * 2**31 + lo`` (``lo < 2**31``) to which products of
  two factors below 2**62 are added exactly (:func:`_add_product`);
* a decode run is cut into pieces whose time stays below 2**62 as (about 4.6 s) and whose
  length stays below 2**20 iterations: the pieces' sums equal the whole run's (times,
  blocks and integrals are additive and the run's stopping rules do not change inside it),
  so results are unchanged.

:func:`fits_kernel` checks that a replica's cost coefficients and limits keep every other
product below 2**62; a replica that fails it runs the Python path.

``_start``, ``_count_before``, ``_series`` and ``_memory_part`` restate
:mod:`.stretch`'s closed-form sums in int64 (the Python path keeps Python integers, which
never overflow); the tests compare the two paths on every result.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NS = 1_000_000_000  # attoseconds per nanosecond
BIG = 1 << 62  # bound of every int64 product and of a decode-run piece's time
MAX_RUN = 1 << 16  # most iterations in a decode-run piece (see fits_kernel)
M31 = (1 << 31) - 1

# per-request columns of `req` (rows)
P, OUT, C, G, OFF, FI, ST, SN, FN, EN, BSZ, PRE, RN, RP, PN, PP = range(16)
NCOL = 16
WAITING, PREFILL, DECODE, DONE = 0, 1, 2, 3
# scalar state `s`
(T_NS, T_REM, IT, MAXUSED, RESERVED, LASTMEM, LE_NS, LE_REM, TOKENS, QUERIED, PREEMPTED) = range(11)
(HELD, MAXKV, FREE, NDEC, OFFSUM, NEXT, NRUN, RHEAD, RTAIL, NPREF, PHEAD, PTAIL) = range(11, 23)
(WHEAD, WCOUNT, HEAPN, NFIN, BUSY_NS, BUSY_REM, MEM_NS, MEM_REM, KV_HI, KV_LO) = range(23, 33)
NSCALAR = 33
# limits `lim`
L_BUDGET, L_SEQS, L_BS, L_BLOCKS, L_NOEVICT, L_MAXTOK, L_CP, L_MC, L_CHUNKED = range(9)


def fits_kernel(bases: list[int], cp: int, mc: int, budget: int, seqs: int, cap: int) -> bool:
    """Whether every int64 the kernel forms stays in range (else: the Python path).

    `bases`: the largest compute, memory and other base times; `cap`: the cache's tokens.
    An iteration reads at most ``cap + budget`` context tokens and ``cap * (budget + 2) +
    budget**2`` attention pairs; its time must stay below 2**62 as (4.6 s). A decode-run
    piece then lasts at most 2**62 as (or one iteration) and 2**16 iterations, so with at
    most 2**14 running requests and 2**31 cached tokens every product added to the KV
    integral stays below 2**92 (:func:`_add_product`)."""
    pairs = cap * (budget + 2) + budget * budget
    iteration = sum(bases) + cp * pairs + mc * (cap + budget)
    return iteration < BIG and seqs < 1 << 14 and cap + budget < 1 << 31


@njit(cache=True)
def _add_as(s: np.ndarray, ns: int, rem: int, span: int) -> None:
    """s[ns] * 1e9 + s[rem] += span (0 <= span < 2**62)."""
    r = s[rem] + span
    s[ns] += r // NS
    s[rem] = r % NS


@njit(cache=True)
def _add_product(s: np.ndarray, a: int, b: int) -> None:
    """KV integral ``s[KV_HI] * 2**31 + s[KV_LO] += a * b`` exactly (0 <= a, b < 2**62 and
    a * b < 2**93, so that the high halves' product times 2**31 stays below 2**62)."""
    a1, a0 = a >> 31, a & M31
    b1, b0 = b >> 31, b & M31
    lo = s[KV_LO] + a0 * b0
    s[KV_HI] += (lo >> 31) + a1 * b0 + a0 * b1 + ((a1 * b1) << 31)
    s[KV_LO] = lo & M31


@njit(cache=True)
def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@njit(cache=True)
def _final_blocks(req: np.ndarray, lim: np.ndarray, r: int) -> int:
    """limits.reserved_kv_tokens in blocks (scheduler._final_blocks)."""
    bs = lim[L_BS]
    out = req[OUT, r] if req[OUT, r] > lim[L_MAXTOK] else lim[L_MAXTOK]
    want = req[P, r] + out - 1
    cap = lim[L_BLOCKS] * bs
    return _ceil(want if want < cap else cap, bs)


# ----------------------------------------------------------------- ordered sets and heap
@njit(cache=True)
def _link(req: np.ndarray, s: np.ndarray, r: int, nxt: int, prv: int, head: int, tail: int):
    """Append r to the doubly linked list (columns nxt/prv, ends s[head]/s[tail])."""
    req[nxt, r] = -1
    req[prv, r] = s[tail]
    if s[tail] >= 0:
        req[nxt, s[tail]] = r
    else:
        s[head] = r
    s[tail] = r


@njit(cache=True)
def _unlink(req: np.ndarray, s: np.ndarray, r: int, nxt: int, prv: int, head: int, tail: int):
    a, b = req[prv, r], req[nxt, r]
    if a >= 0:
        req[nxt, a] = b
    else:
        s[head] = b
    if b >= 0:
        req[prv, b] = a
    else:
        s[tail] = a


@njit(cache=True)
def _heap_less(hf: np.ndarray, hr: np.ndarray, i: int, j: int) -> bool:
    return hf[i] < hf[j] or (hf[i] == hf[j] and hr[i] < hr[j])


@njit(cache=True)
def _heap_push(hf: np.ndarray, hr: np.ndarray, s: np.ndarray, f: int, r: int) -> None:
    i = s[HEAPN]
    s[HEAPN] = i + 1
    hf[i], hr[i] = f, r
    while i > 0:
        up = (i - 1) // 2
        if not _heap_less(hf, hr, i, up):
            break
        hf[i], hf[up] = hf[up], hf[i]
        hr[i], hr[up] = hr[up], hr[i]
        i = up


@njit(cache=True)
def _heap_pop(hf: np.ndarray, hr: np.ndarray, s: np.ndarray) -> None:
    n = s[HEAPN] - 1
    s[HEAPN] = n
    hf[0], hr[0] = hf[n], hr[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _heap_less(hf, hr, c + 1, c):
            c += 1
        if not _heap_less(hf, hr, c, i):
            break
        hf[i], hf[c] = hf[c], hf[i]
        hr[i], hr[c] = hr[c], hr[i]
        i = c


@njit(cache=True)
def _heap_compact(hf: np.ndarray, hr: np.ndarray, s: np.ndarray, req: np.ndarray) -> None:
    """Drop stale entries (the heap's order of live entries is unchanged: pops follow keys)."""
    n = s[HEAPN]
    s[HEAPN] = 0
    fs, rs = hf[:n].copy(), hr[:n].copy()
    for i in range(n):
        r = rs[i]
        if req[ST, r] == DECODE and req[FI, r] == fs[i]:
            _heap_push(hf, hr, s, fs[i], r)


# ----------------------------------------------------------------- decoder bookkeeping
@njit(cache=True)
def _to_decode(req, s, hf, hr, res, bs, r):
    off = req[C, r] - s[IT]
    req[OFF, r] = off
    req[FI, r] = s[IT] + req[OUT, r] - req[G, r]
    req[ST, r] = DECODE
    s[NDEC] += 1
    s[OFFSUM] += off
    res[(-off) % bs] += 1
    if s[HEAPN] == hf.shape[0]:
        _heap_compact(hf, hr, s, req)
    _heap_push(hf, hr, s, req[FI, r], r)


@njit(cache=True)
def _from_decode(req, s, res, bs, r):
    off = req[OFF, r]
    req[C, r] = s[IT] + off
    req[G, r] = req[C, r] - req[P, r] + 1
    s[NDEC] -= 1
    s[OFFSUM] -= off
    res[(-off) % bs] -= 1


@njit(cache=True)
def _finish(req, s, lim, fin, r, end_ns):
    """Finish r and return its blocks (no prefix cache: order immaterial)."""
    req[EN, r] = end_ns
    req[ST, r] = DONE
    _unlink(req, s, r, RN, RP, RHEAD, RTAIL)
    s[NRUN] -= 1
    if lim[L_NOEVICT]:
        s[RESERVED] -= _final_blocks(req, lim, r)
    s[FREE] += _ceil(req[P, r] + req[OUT, r] - 1, lim[L_BS])
    fin[s[NFIN]] = r
    s[NFIN] += 1


@njit(cache=True)
def _pop_finished(req, s, lim, hf, hr, res, fin):
    it, end_ns = s[IT], s[T_NS]
    while s[HEAPN] and hf[0] <= it:
        f, r = hf[0], hr[0]
        _heap_pop(hf, hr, s)
        if req[ST, r] == DECODE and req[FI, r] == f:
            _from_decode(req, s, res, lim[L_BS], r)
            _finish(req, s, lim, fin, r, end_ns)


@njit(cache=True)
def _preempt(req, s, lim, res, wait, v):
    if req[ST, v] == DECODE:
        _from_decode(req, s, res, lim[L_BS], v)
    else:
        _unlink(req, s, v, PN, PP, PHEAD, PTAIL)
        s[NPREF] -= 1
    _unlink(req, s, v, RN, RP, RHEAD, RTAIL)
    s[NRUN] -= 1
    if lim[L_NOEVICT]:
        s[RESERVED] -= _final_blocks(req, lim, v)
    s[FREE] += _ceil(req[C, v], lim[L_BS])
    req[C, v] = 0
    req[ST, v] = WAITING
    m = wait.shape[0]
    s[WHEAD] = (s[WHEAD] - 1) % m
    wait[s[WHEAD]] = v
    s[WCOUNT] += 1
    req[PRE, v] += 1
    s[PREEMPTED] += 1


# ----------------------------------------------------------------- decode runs
@njit(cache=True)
def _start(e, a_hi, b_hi, a_lo, b_lo, cross, j):
    x = cross if cross < j else j
    s_x = (x - 1) * x // 2
    return e * j + a_lo * x + b_lo * s_x + a_hi * (j - x) + b_hi * ((j - 1) * j // 2 - s_x)


@njit(cache=True)
def _count_before(e, a_hi, b_hi, a_lo, b_lo, cross, limit, deadline):
    if _start(e, a_hi, b_hi, a_lo, b_lo, cross, limit - 1) < deadline:
        return limit
    top = a_hi if a_hi > a_lo else a_lo
    hi = min(limit - 1, (deadline - 1) // (top + e) + 1)
    d_hi = max(a_hi + b_hi * hi, a_lo + b_lo * hi) + e
    lo = (deadline - 1) // d_hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _start(e, a_hi, b_hi, a_lo, b_lo, cross, mid) < deadline:
            lo = mid
        else:
            hi = mid
    return lo + 1


@njit(cache=True)
def _series(a, b, j0, j1):
    count = j1 - j0
    if count <= 0:
        return 0
    return a * count + b * ((j0 + j1 - 1) * count // 2)


@njit(cache=True)
def _memory_part(a_mem, b_mem, e, d0, d1, j):
    if d1 > 0:
        lo, hi = min(max(0, -(d0 // d1)), j), j
    elif d1 < 0:
        lo, hi = 0, (min(d0 // -d1 + 1, j) if d0 >= 0 else 0)
    else:
        lo, hi = 0, (j if d0 >= 0 else 0)
    return _series(a_mem, b_mem, lo, hi) + e * max(0, hi - lo)


@njit(cache=True)
def run_lines(ct, mt, et, lim, n, context0):
    """A decode-only run of `n` decoders from context `context0`: iteration i costs
    e + max(a1 + b1 * i, a2 + b2 * i) attoseconds (compute line 1, memory line 2)."""
    cp, mc = lim[L_CP], lim[L_MC]
    return et[n], ct[n] + cp * (context0 + n), cp * n, mt[n] + mc * context0, mc * n


@njit(cache=True)
def ordered_lines(a1, b1, a2, b2):
    """(a_hi, b_hi, a_lo, b_lo, cross): the line that leads in the end ("hi"), and the
    first iteration index from which it leads."""
    d0, d1 = a2 - a1, b2 - b1
    if d1 > 0 or (d1 == 0 and d0 > 0):
        a_hi, b_hi, a_lo, b_lo = a2, b2, a1, b1
    else:
        a_hi, b_hi, a_lo, b_lo = a1, b1, a2, b2
    cross = 0 if a_hi >= a_lo else -((a_hi - a_lo) // (b_hi - b_lo))
    return a_hi, b_hi, a_lo, b_lo, cross


@njit(cache=True)
def piece_limit(e, a_hi, b_hi, a_lo, b_lo, limit):
    """At most MAX_RUN iterations, and few enough that the piece's time stays below 2**62."""
    limit = min(limit, MAX_RUN)
    d_last = max(a_hi + b_hi * (limit - 1), a_lo + b_lo * (limit - 1)) + e
    if limit > BIG // d_last:
        limit = max(1, BIG // d_last)
    return limit


@njit(cache=True)
def _decode_run(ct, mt, et, lim, s, n, context0, held0, limit, deadline):
    """stretch.decode_run for the kernel: advances the clock, sums and KV integral by the
    run's first iterations (a piece: see module doc); returns how many ran (>= 1).
    `deadline`: attoseconds from now (> 0), or -1 for none."""
    e, a1, b1, a2, b2 = run_lines(ct, mt, et, lim, n, context0)
    d0, d1 = a2 - a1, b2 - b1
    a_hi, b_hi, a_lo, b_lo, cross = ordered_lines(a1, b1, a2, b2)
    limit = piece_limit(e, a_hi, b_hi, a_lo, b_lo, limit)
    k = limit
    if deadline >= 0:
        k = _count_before(e, a_hi, b_hi, a_lo, b_lo, cross, limit, deadline)
    x = cross if cross < k else k
    s_x, s_k = (x - 1) * x // 2, (k - 1) * k // 2
    span = e * k + a_lo * x + b_lo * s_x + a_hi * (k - x) + b_hi * (s_k - s_x)
    q_x, q_k = s_x * (2 * x - 1) // 3, s_k * (2 * k - 1) // 3
    _add_product(s, held0 + n, span)  # KV integral: (held0 + n) * span + n * weighted
    _add_product(s, e, n * s_k)
    _add_product(s, a_lo, n * s_x)
    _add_product(s, b_lo, n * q_x)
    _add_product(s, a_hi, n * (s_k - s_x))
    _add_product(s, b_hi, n * (q_k - q_x))
    last = d0 + d1 * (k - 1) >= 0
    memory = span if d0 >= 0 and last else _memory_part(a2, b2, e, d0, d1, k)
    _add_as(s, T_NS, T_REM, span)
    _add_as(s, BUSY_NS, BUSY_REM, span)
    _add_as(s, MEM_NS, MEM_REM, memory)
    s[LASTMEM] = 1 if last else 0
    return k


@njit(cache=True)
def _relative(target_ns: int, s: np.ndarray) -> int:
    """Attoseconds from the clock to `target_ns` (> clock), at most BIG."""
    if target_ns - s[T_NS] >= BIG // NS:
        return BIG
    return (target_ns - s[T_NS]) * NS - s[T_REM]


@njit(cache=True)
def _admission_need(req, lim, r, budget):
    """Blocks to admit waiting r with a chunk of at most `budget` tokens (no prefix cache);
    more than any cache has when prefill is not chunked and its tokens exceed `budget`."""
    tokens = req[P, r] + req[G, r]
    base = req[C, r]
    if tokens - base > budget and not lim[L_CHUNKED]:
        return BIG
    return _ceil(base + min(tokens - base, budget), lim[L_BS])


@njit(cache=True)
def _admission_blocked(req, s, lim, wait):
    if s[NRUN] >= lim[L_SEQS]:
        return True
    if s[WCOUNT] == 0:
        return False
    r = wait[s[WHEAD]]
    if lim[L_NOEVICT] and s[RESERVED] + _final_blocks(req, lim, r) > lim[L_BLOCKS]:
        return True
    return _admission_need(req, lim, r, lim[L_BUDGET] - s[NDEC]) > s[FREE]


@njit(cache=True)
def _kv_limit(s, res, bs, want, free):
    n = s[NDEC]
    if n * _ceil(want, bs) <= free:
        return want
    base = s[IT] % bs
    cycles, rem = free // n, free % n
    acc, x = 0, 0
    while x < bs - 1:
        acc += res[(base + x) % bs]
        if acc > rem:
            break
        x += 1
    return min(want, cycles * bs + x)


@njit(cache=True)
def _blocks_in(s, res, bs, k):
    base = s[IT] % bs
    full, part = k // bs, k % bs
    total = full * s[NDEC]
    for x in range(part):
        total += res[(base + x) % bs]
    return total


@njit(cache=True)
def _try_decode_run(ct, mt, et, lim, req, s, hf, hr, res, wait, fin, stream_ns, end, until_ns):
    """scheduler._try_decode_run; returns whether it ran (`end`: the stream's length)."""
    deadline = -1
    if s[WCOUNT]:
        if not _admission_blocked(req, s, lim, wait):
            return False
    elif s[NRUN] < lim[L_SEQS] and s[NEXT] < end:
        deadline = _relative(stream_ns[s[NEXT]], s)
    while s[HEAPN]:  # drop stale entries
        r = hr[0]
        if req[ST, r] == DECODE and req[FI, r] == hf[0]:
            break
        _heap_pop(hf, hr, s)
    bs = lim[L_BS]
    limit = _kv_limit(s, res, bs, hf[0] - s[IT], s[FREE])
    if limit <= 0:
        return False
    n = s[NDEC]
    context0 = s[OFFSUM] + n * s[IT]
    if until_ns >= 0:
        bound = _relative(until_ns, s)
        if deadline < 0 or bound < deadline:
            deadline = bound
    k = _decode_run(ct, mt, et, lim, s, n, context0, context0, limit, deadline)
    s[FREE] -= _blocks_in(s, res, bs, k)
    used = lim[L_BLOCKS] - s[FREE]
    if used > s[MAXUSED]:
        s[MAXUSED] = used
    held = context0 + n * k
    s[HELD] = held
    if held > s[MAXKV]:
        s[MAXKV] = held
    s[LE_NS], s[LE_REM] = s[T_NS], s[T_REM]
    s[TOKENS] += n * k
    s[IT] += k
    if hf[0] <= s[IT]:
        _pop_finished(req, s, lim, hf, hr, res, fin)
    return True


# ----------------------------------------------------------------- general iteration
@njit(cache=True)
def _evict_for_decodes(req, s, lim, res, wait):
    slot = s[IT] % lim[L_BS]
    served = 0
    evicted = False
    while True:
        waiting = res[slot] - served
        take = min(waiting, s[FREE])
        s[FREE] -= take
        served += take
        if take == waiting:
            return evicted
        _preempt(req, s, lim, res, wait, s[RTAIL])
        evicted = True


@njit(cache=True)
def _plan_chunks(req, s, lim, wait, budget, evicted, ch_r, ch_c):
    """Passes 2 and 3 (scheduler._plan_chunks); returns the number of chunks."""
    bs = lim[L_BS]
    nch = 0
    r = s[PHEAD]
    while r >= 0:
        if budget == 0:
            break
        done = req[C, r]
        have = _ceil(done, bs)
        room = (have + s[FREE]) * bs - done
        chunk = min(req[P, r] + req[G, r] - done, budget, room)
        if chunk > 0:
            s[FREE] -= _ceil(done + chunk, bs) - have
            ch_r[nch], ch_c[nch] = r, chunk
            nch += 1
            budget -= chunk
        r = req[PN, r]
    if evicted and s[NRUN]:
        return nch
    m = wait.shape[0]
    while s[WCOUNT] and s[NRUN] < lim[L_SEQS] and budget > 0:
        r = wait[s[WHEAD]]
        if lim[L_NOEVICT] and s[RESERVED] + _final_blocks(req, lim, r) > lim[L_BLOCKS]:
            break
        if _admission_need(req, lim, r, budget) > s[FREE]:
            break
        s[WHEAD] = (s[WHEAD] + 1) % m
        s[WCOUNT] -= 1
        if lim[L_NOEVICT]:
            s[RESERVED] += _final_blocks(req, lim, r)
        base = req[C, r]
        tokens = req[P, r] + req[G, r]
        if not base:
            s[QUERIED] += tokens
        chunk = min(tokens - base, budget)
        _link(req, s, r, RN, RP, RHEAD, RTAIL)
        s[NRUN] += 1
        _link(req, s, r, PN, PP, PHEAD, PTAIL)
        s[NPREF] += 1
        req[ST, r] = PREFILL
        s[FREE] -= _ceil(base + chunk, bs)
        ch_r[nch], ch_c[nch] = r, chunk
        nch += 1
        budget -= chunk
        if req[SN, r] == -1:
            req[SN, r] = s[T_NS]
    return nch


@njit(cache=True)
def _plan(req, s, lim, res, wait, ch_r, ch_c):
    evicted = False
    while True:
        need = res[s[IT] % lim[L_BS]]
        if need > s[FREE]:
            evicted = _evict_for_decodes(req, s, lim, res, wait) or evicted
        elif need:
            s[FREE] -= need
        nch = _plan_chunks(req, s, lim, wait, lim[L_BUDGET] - s[NDEC], evicted, ch_r, ch_c)
        if nch or s[NDEC]:
            return nch
        _preempt(req, s, lim, res, wait, s[RTAIL])
        evicted = True


@njit(cache=True)
def _one_iteration(ct, mt, et, lim, req, s, hf, hr, res, wait, fin, ch_r, ch_c):
    nch = _plan(req, s, lim, res, wait, ch_r, ch_c)
    used = lim[L_BLOCKS] - s[FREE]
    if used > s[MAXUSED]:
        s[MAXUSED] = used
    n = s[NDEC]
    dec_context = s[OFFSUM] + n * s[IT]
    tokens, context, pairs = n, dec_context, dec_context + n
    for i in range(nch):
        r, c = ch_r[i], ch_c[i]
        comp = req[C, r]
        tokens += c
        context += comp
        pairs += c * comp + c * (c + 1) // 2
    compute = ct[tokens] + lim[L_CP] * pairs
    memory = mt[tokens] + lim[L_MC] * context
    bound = memory >= compute
    span = (memory if bound else compute) + et[tokens]
    held = tokens
    if nch == s[NPREF]:
        held += context
    else:
        held += dec_context
        r = s[PHEAD]
        while r >= 0:
            held += req[C, r]
            r = req[PN, r]
    _add_product(s, held, span)
    s[HELD] = held
    if held > s[MAXKV]:
        s[MAXKV] = held
    _add_as(s, T_NS, T_REM, span)
    _add_as(s, BUSY_NS, BUSY_REM, span)
    if bound:
        _add_as(s, MEM_NS, MEM_REM, span)
    s[LASTMEM] = 1 if bound else 0
    s[LE_NS], s[LE_REM] = s[T_NS], s[T_REM]
    s[TOKENS] += tokens
    s[IT] += 1
    if s[HEAPN] and hf[0] <= s[IT]:
        _pop_finished(req, s, lim, hf, hr, res, fin)
    _apply_chunks(req, s, lim, hf, hr, res, fin, ch_r, ch_c, nch, n + nch)


@njit(cache=True)
def _apply_chunks(req, s, lim, hf, hr, res, fin, ch_r, ch_c, nch, batch):
    end_ns = s[T_NS]
    for i in range(nch):
        r, c = ch_r[i], ch_c[i]
        req[C, r] += c
        total = req[P, r] + req[G, r]
        if req[C, r] == total:
            req[G, r] += 1
            if req[G, r] == 1:
                req[FN, r] = end_ns
                req[BSZ, r] = batch
            if req[G, r] == req[OUT, r]:
                _unlink(req, s, r, PN, PP, PHEAD, PTAIL)
                s[NPREF] -= 1
                _finish(req, s, lim, fin, r, end_ns)
                continue
        elif req[G, r] == 0 or total - req[C, r] > 1:
            continue
        _unlink(req, s, r, PN, PP, PHEAD, PTAIL)
        s[NPREF] -= 1
        _to_decode(req, s, hf, hr, res, lim[L_BS], r)


@njit(cache=True)
def run_kernel(ct, mt, et, lim, req, s, hf, hr, res, wait, fin, stream_r, stream_ns, until_ns):
    """scheduler.run_until over the packed state (`until_ns` -1: until all are done)."""
    ch_r = np.empty(lim[L_SEQS] + 1, np.int64)
    ch_c = np.empty(lim[L_SEQS] + 1, np.int64)
    end = stream_ns.shape[0]
    args = (req, s, hf, hr, res, wait, fin, stream_r, stream_ns, end, until_ns, ch_r, ch_c)
    run_loop(ct, mt, et, lim, *args)


@njit(cache=True)
def run_loop(
    ct, mt, et, lim, req, s, hf, hr, res, wait, fin, stream_r, stream_ns, end, until_ns, ch_r, ch_c
):
    """The loop of `run_kernel` over the first `end` entries of the arrival stream, with
    chunk buffers `ch_r`, `ch_c` of at least ``max_num_seqs + 1`` entries (the compiled
    fleet, :mod:`.fleetkernel`, calls it replica by replica with growing streams)."""
    m = wait.shape[0]
    while True:
        nxt = s[NEXT]
        if s[NRUN] == 0 and s[WCOUNT] == 0:
            if nxt >= end:
                return
            if stream_ns[nxt] > s[T_NS]:
                s[T_NS], s[T_REM] = stream_ns[nxt], 0
        if until_ns >= 0 and s[T_NS] >= until_ns:
            return
        while nxt < end and stream_ns[nxt] <= s[T_NS]:
            wait[(s[WHEAD] + s[WCOUNT]) % m] = stream_r[nxt]
            s[WCOUNT] += 1
            nxt += 1
        s[NEXT] = nxt
        decode_only = s[NPREF] == 0 and s[NDEC] > 0
        if decode_only and _try_decode_run(
            ct, mt, et, lim, req, s, hf, hr, res, wait, fin, stream_ns, end, until_ns
        ):
            continue
        _one_iteration(ct, mt, et, lim, req, s, hf, hr, res, wait, fin, ch_r, ch_c)
