"""The window loop of an LLM replica fleet under ``least_outstanding`` or ``round_robin``
as one compiled call.

:mod:`.fleet` hands this module every replica's scheduler state packed as in :mod:`.jitglue`
(one slice per replica of stacked arrays) and the trace's columns; :func:`run_span` then
runs the engine's windows (engine/windows.py's ``run_windows`` with its ``WindowClock``) for
as long as it may: per window, the same end (``next_window_end``: to the next arrival's
window when routing reads reports, to the last arrival's when it is blind), the arrivals
routed (``RoutingPlane.route``: :func:`~..least_loaded.route_ranges` over the plane's report
arrays, or each router's candidates in turn), each replica's share queued
(``RequestTable.add_many``: a request that can never fit is finished and rejected at its
arrival), every replica run to the window's end (the scheduler kernel's loop), the requests
finished before it collected as ``LLMReplicaCell.advance`` returns them (held back until a
bound passes their finish), and the reports refreshed (``RoutingPlane.refresh``: reported =
outstanding, sent counts cleared).

It stops before a window that would start at the epoch bound, once the trace's rows are all
routed (the drain runs in Python: it reads ``quiet_until``), after `max_rows` rows, when a
replica's arrays or the snapshot buffer are full, and records the scalar state of every
replica at each metrics boundary (device counters are sampled from it, in Python).

Like the Python shard (engine/shard.py's ``Lazy``), a replica that receives nothing in a
window ending by its quiet bound (:func:`_quiet`, ``LLMReplicaCell.quiet_until``'s general
bound) is not advanced: it would return nothing and report the same load, and a replica
advanced later in one go gives identical results (any cut of time). Every replica is
advanced to the span's last bound before the span ends or records a snapshot.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mtia_cluster.engine.least_loaded import route_ranges
from mtia_cluster.engine.llm import kernel as k

# book-keeping columns per replica (`bk`): stream length, packed requests, finished ones
# looked at, held back, outstanding at the start plus submitted, returned
NSTREAM, M, SEEN, NHELD, SUB, RET = range(6)
NBOOK = 6
# the clock (`c`); BLIND: routing reads no reports (windows run on to the last arrival's),
# RR: round robin (else least_outstanding)
T, LO, STEP, METRICS, STOP, MAX_ROWS, LAST_ADV, NWIN, NOUT, NSNAP, FLOOR, BLIND, RR = range(13)
NCLOCK = 13
NEVER = 1 << 62  # a replica with nothing in flight finishes nothing before new submissions
SMALL = 4096  # windows of at most this many rows x candidates are routed by _route_small
# snapshot metadata columns (`meta`)
SNAP_T, SNAP_WIN, SNAP_ADV = range(3)


@njit(cache=True)
def _window_end(arrival, c):
    """WindowClock.next_window_end before the last arrival (no fleet events)."""
    t, lo, step, n = c[T], c[LO], c[STEP], arrival.shape[0]
    until = (t // c[METRICS] + 1) * c[METRICS]
    if c[STOP] >= 0:
        until = min(until, max(c[STOP], t + step))
    if c[BLIND]:
        return min(until, (arrival[n - 1] // step + 1) * step)
    nxt = lo
    if arrival[lo] < t + step:
        nxt = np.searchsorted(arrival, t + step, side="left")
    if nxt >= n:
        return t + step
    return min(until, arrival[nxt] // step * step)


@njit(cache=True)
def _queue(req, s, lim, bk, fin, sr, sns, row, rej, x, p, o, a):
    """Queue trace row `x` (prompt p, output o, arrival a) on one replica."""
    j = bk[M]
    bk[M] += 1
    bk[SUB] += 1
    for col in range(k.NCOL):
        req[col, j] = 0
    for col in (k.RN, k.RP, k.PN, k.PP):
        req[col, j] = -1
    req[k.P, j], req[k.OUT, j] = p, o
    row[j] = x
    bs = lim[k.L_BS]
    whole = 0 if lim[k.L_CHUNKED] else (p if lim[k.L_NOEVICT] else p + o - 1)
    if p >= 1 and o >= 1 and -(-(p + o - 1) // bs) <= lim[k.L_BLOCKS] and whole <= lim[k.L_BUDGET]:
        req[k.ST, j] = k.WAITING
        req[k.SN, j] = req[k.FN, j] = req[k.EN, j] = -1
        rej[j] = 0
        sr[bk[NSTREAM]], sns[bk[NSTREAM]] = j, a
        bk[NSTREAM] += 1
    else:  # rejected at its arrival: finished there
        req[k.ST, j] = k.DONE
        req[k.SN, j] = req[k.FN, j] = req[k.EN, j] = a
        rej[j] = 1
        fin[s[k.NFIN]] = j
        s[k.NFIN] += 1


@njit(cache=True)
def _collect(req, s, bk, fin, held, until, i, c, o_w, o_rep, o_pos):
    """LLMReplicaCell.advance's returns: held-back and newly finished requests (in that
    order) that finished before `until` are recorded (window, replica, position); the
    others are held (`held` is rewritten in place: a kept entry never passes its read)."""
    kept, nheld, seen = 0, bk[NHELD], bk[SEEN]
    for q in range(nheld + s[k.NFIN] - seen):
        j = held[q] if q < nheld else fin[seen + q - nheld]
        if req[k.EN, j] < until:
            o_w[c[NOUT]], o_rep[c[NOUT]], o_pos[c[NOUT]] = c[NWIN], i, j
            c[NOUT] += 1
            bk[RET] += 1
        else:
            held[kept] = j
            kept += 1
    bk[SEEN] = s[k.NFIN]
    bk[NHELD] = kept


@njit(cache=True)
def _fewest_iterations(req, s, wait, bk):
    """cell.fewest_iterations_left: an iteration samples at most one token of a request."""
    if bk[NSTREAM] > s[k.NEXT]:
        return 1  # some request not yet queued
    fewest = NEVER
    r = s[k.RHEAD]
    while r >= 0:
        decoding = req[k.ST, r] == k.DECODE
        fewest = min(fewest, req[k.FI, r] - s[k.IT] if decoding else req[k.OUT, r] - req[k.G, r])
        r = req[k.RN, r]
    m = wait.shape[0]
    for q in range(s[k.WCOUNT]):
        r = wait[(s[k.WHEAD] + q) % m]
        fewest = min(fewest, req[k.OUT, r] - req[k.G, r])
    return fewest


@njit(cache=True)
def _decode_span(tables, s, n, k_run):
    """Attoseconds of the next `k_run` decode-only iterations of `n` decoders (fewer if
    that many would pass a decode-run piece's limits: a lower bound then), as
    kernel._decode_run times them, without running them."""
    ct, mt, et, lim = tables
    context0 = s[k.OFFSUM] + n * s[k.IT]
    e, a1, b1, a2, b2 = k.run_lines(ct, mt, et, lim, n, context0)
    a_hi, b_hi, a_lo, b_lo, cross = k.ordered_lines(a1, b1, a2, b2)
    j = k.piece_limit(e, a_hi, b_hi, a_lo, b_lo, k_run)
    return k._start(e, a_hi, b_hi, a_lo, b_lo, cross, j)


@njit(cache=True)
def _quiet(req, s, wait, bk, held, floor_as, tables, hf):
    """LLMReplicaCell.quiet_until after an advance: no request of the replica finishes
    before it, absent new submissions (-1: no floor known, advance every window). The
    earliest held-back finish bounds it; when every unfinished request decodes and no block
    shortage can come first, the exact time of the decode-only iterations up to the heap's
    top (the nearest finish, or earlier for a stale entry); otherwise the fewest iterations
    any request still needs, each at least the shortest iteration `floor_as`."""
    bound = NEVER
    for q in range(bk[NHELD]):
        bound = min(bound, req[k.EN, held[q]])
    if s[k.NRUN] + s[k.WCOUNT] + bk[NSTREAM] - s[k.NEXT] == 0:
        return bound
    if floor_as < 0:
        return -1
    dec = s[k.NDEC]
    if dec and s[k.NRUN] + s[k.WCOUNT] + bk[NSTREAM] - s[k.NEXT] == dec:
        run = hf[0] - s[k.IT]  # all decode: the run to the first finish (heap top or less)
        bs = tables[3][k.L_BS]
        if run > 0 and dec * -(-run // bs) <= s[k.FREE]:  # no block shortage before it
            span = _decode_span(tables, s, dec, run)
            return min(bound, s[k.T_NS] + (s[k.T_REM] + span) // k.NS)
    n = _fewest_iterations(req, s, wait, bk)
    if n >= (1 << 31):
        return bound
    ahead = n * (floor_as // k.NS) + (s[k.T_REM] + n * (floor_as % k.NS)) // k.NS
    return min(bound, s[k.T_NS] + ahead)


@njit(cache=True)
def _fits(bk, cap, rows):
    """Whether every replica has room for `rows` more requests."""
    return bk[:, M].max() + rows <= cap


@njit(cache=True)
def _advance(tables, state, i, until, c, out, ch_r, ch_c):
    """Run replica `i` to `until` and collect what it returns; its outstanding count."""
    ct, mt, et, lim = tables
    req, s, hf, hr, res, wait, fin, sr, sns, held, bk = state[:9] + state[11:]
    args = (req[i], s[i], hf[i], hr[i], res[i], wait[i], fin[i], sr[i], sns[i])
    k.run_loop(ct, mt, et, lim, *args, bk[i, NSTREAM], until, ch_r, ch_c)
    _collect(req[i], s[i], bk[i], fin[i], held[i], until, i, c, out[0], out[1], out[2])
    return bk[i, SUB] - bk[i, RET]


@njit(cache=True)
def _route_small(rtr, r_lo, r_hi, reported, sent, cells, lo, hi):
    """``least_outstanding`` as it is defined (least_loaded.py): rows lo..hi-1 in arrival
    order, each to its router's cell with the fewest reported + sent (ties: the lowest
    id), counted in `sent`; no allocation (a window of a few rows over a few cells)."""
    for x in range(lo, hi):
        a, b = r_lo[rtr[x]], r_hi[rtr[x]]
        best = a
        for j in range(a + 1, b):
            if reported[j] + sent[j] < reported[best] + sent[best]:
                best = j
        cells[x] = best
        sent[best] += 1


@njit(cache=True)
def _round_robin(rtr, r_lo, r_hi, nxt, sent, cells, lo, hi):
    """``round_robin`` (router.py): rows lo..hi-1 in arrival order, each to its router's
    next candidate in turn (`nxt`: per router, continuing across windows), counted in
    `sent` as ``Router.route`` counts them."""
    for x in range(lo, hi):
        r = rtr[x]
        cells[x] = r_lo[r] + nxt[r]
        nxt[r] = (nxt[r] + 1) % (r_hi[r] - r_lo[r])
        sent[cells[x]] += 1


@njit(cache=True)
def _window(tables, state, trace, plane, c, out, quiet, cells, lo, hi, until, ch_r, ch_c):
    """One window's routing, submissions, advances and reports (module doc)."""
    lim = tables[3]
    req, s, wait, fin, sr, sns, row, rej, held, bk = state[:2] + state[5:]
    arrival, inp, outp, rtr = trace
    r_lo, r_hi, reported, sent, cell_rep, rep_cell, nxt = plane
    if c[RR]:
        _round_robin(rtr, r_lo, r_hi, nxt, sent, cells, lo, hi)
    elif (hi - lo) * (r_hi - r_lo).max() <= SMALL:
        _route_small(rtr, r_lo, r_hi, reported, sent, cells, lo, hi)
    else:
        route_ranges(rtr[lo:hi], r_lo, r_hi, reported, sent, cells[lo:hi])
    for x in range(lo, hi):
        i = cell_rep[cells[x]]
        quiet[i] = -1  # a submission: advanced in this window
        _queue(req[i], s[i], lim, bk[i], fin[i], sr[i], sns[i], row[i], rej[i],
               x, inp[x], outp[x], arrival[x])  # fmt: skip
    for i in range(s.shape[0]):
        if until <= quiet[i]:
            continue  # finishes nothing before `until`: its report stays
        reported[rep_cell[i]] = _advance(tables, state, i, until, c, out, ch_r, ch_c)
        quiet[i] = _quiet(req[i], s[i], wait[i], bk[i], held[i], c[FLOOR], tables, state[2][i])
    for x in range(lo, hi):
        sent[cells[x]] = 0
    c[LO], c[T], c[LAST_ADV] = hi, until, until
    c[NWIN] += 1


@njit(cache=True)
def _catch_up(tables, state, c, out, ch_r, ch_c):
    """Every replica run to the last bound (those skipped finish nothing before it)."""
    for i in range(state[1].shape[0]):
        _advance(tables, state, i, c[LAST_ADV], c, out, ch_r, ch_c)


@njit(cache=True)
def run_span(tables, state, trace, plane, c, out, snap, meta):
    """Run windows from ``c[T]`` (see module doc); everything is updated in place.

    `tables`: (compute, memory, other, limits) shared by the replicas; `state`: stacked per
    replica (req, scalars, heap keys, heap positions, residues, waiting ring, finished,
    stream positions, stream arrivals, trace row, rejected, held, book-keeping); `trace`:
    (arrival, input tokens, output tokens, router index) per row; `plane`: (router first
    cell, router end cell, reported, sent, replica of each cell, cell of each replica,
    next round-robin candidate per router);
    `out`: (window, replica, position) per returned request; `snap`/`meta`: per metrics
    boundary the replicas' scalars and (time, windows run, last advance bound)."""
    lim, s, bk = tables[3], state[1], state[12]
    arrival, reported = trace[0], plane[2]
    cap, n = state[0].shape[2], arrival.shape[0]
    ch_r = np.empty(lim[k.L_SEQS] + 1, np.int64)
    ch_c = np.empty(lim[k.L_SEQS] + 1, np.int64)
    cells = np.empty(n, np.int64)
    quiet = np.full(s.shape[0], -1, np.int64)  # per replica: see _quiet (-1: advance)
    first = c[LO]
    while c[LO] < n and c[NSNAP] < snap.shape[0] and c[LO] - first < c[MAX_ROWS]:
        if c[STOP] >= 0 and c[T] >= c[STOP]:
            break
        lo = c[LO]
        until = _window_end(arrival, c)
        hi = np.searchsorted(arrival, until, side="left")
        if hi == lo and not np.any(reported):
            c[T] = until  # nothing arrives and nothing is in flight
        elif _fits(bk, cap, hi - lo):
            _window(tables, state, trace, plane, c, out, quiet, cells, lo, hi, until, ch_r, ch_c)
        else:
            break
        if c[T] % c[METRICS] == 0:
            _catch_up(tables, state, c, out, ch_r, ch_c)
            snap[c[NSNAP]] = s
            meta[c[NSNAP], SNAP_T], meta[c[NSNAP], SNAP_WIN] = c[T], c[NWIN]
            meta[c[NSNAP], SNAP_ADV] = c[LAST_ADV]
            c[NSNAP] += 1
    _catch_up(tables, state, c, out, ch_r, ch_c)
