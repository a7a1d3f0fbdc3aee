"""Closed-form sums of decode-only iteration times (the fast path's arithmetic).

During a run of decode-only iterations with ``n`` decoding requests holding ``C0`` KV tokens,
iteration ``i`` reads ``C0 + n*i`` context tokens and ``C0 + n*(i+1)`` attention pairs, so its
duration is ``max(a1 + b1*i, a2 + b2*i) + e`` with integer coefficients (see
:class:`~mtia_cluster.engine.llm.costs.IterationCost`). The sum of the first ``j`` durations
is two arithmetic series split where the two lines cross, computed exactly in integers.

:class:`DecodeRun` states each quantity on its own (tests check it against plain sums);
:func:`decode_run` is what the scheduler calls once per run: the run's length, time, KV-token
integral and memory-bound time in one pass over local integers, without building an object
(tests check it against :class:`DecodeRun` and ``kvstats.decode_run_token_as``).
"""

from __future__ import annotations

from mtia_cluster.engine.llm.costs import IterationCost


def _series(a: int, b: int, j0: int, j1: int) -> int:
    """Sum of a + b*i for i in [j0, j1) (exact: (j0 + j1 - 1) * (j1 - j0) is even)."""
    count = j1 - j0
    if count <= 0:
        return 0
    return a * count + b * ((j0 + j1 - 1) * count // 2)


class DecodeRun:
    """Durations of decode-only iterations i = 0, 1, ... from a given state."""

    __slots__ = ("a_hi", "a_lo", "a_mem", "b_hi", "b_lo", "b_mem", "cross", "d0", "d1", "e")

    def __init__(self, cost: IterationCost, n: int, context0: int) -> None:
        a1 = cost.compute_base_as[n] + cost.compute_per_pair_as * (context0 + n)
        b1 = cost.compute_per_pair_as * n
        a2 = cost.memory_base_as[n] + cost.memory_per_context_as * context0
        b2 = cost.memory_per_context_as * n
        # iteration i is memory-bound iff memory >= compute: d0 + d1 * i >= 0
        self.a_mem, self.b_mem, self.d0, self.d1 = a2, b2, a2 - a1, b2 - b1
        if b1 < b2 or (b1 == b2 and a1 < a2):
            a1, b1, a2, b2 = a2, b2, a1, b1
        # (a_hi, b_hi) has the larger slope; it dominates from index `cross` on.
        self.a_hi, self.b_hi, self.a_lo, self.b_lo = a1, b1, a2, b2
        self.e = cost.other_as[n]
        if a1 >= a2:
            self.cross = 0
        else:  # b1 > b2 here
            self.cross = -((a1 - a2) // (b1 - b2))

    def duration(self, i: int) -> int:
        """Attoseconds of iteration i."""
        return max(self.a_hi + self.b_hi * i, self.a_lo + self.b_lo * i) + self.e

    def total(self, j: int) -> int:
        """Attoseconds of iterations 0..j-1 together."""
        x = min(self.cross, j)
        return (
            self.e * j + _series(self.a_lo, self.b_lo, 0, x) + _series(self.a_hi, self.b_hi, x, j)
        )

    def memory_bound(self, i: int) -> bool:
        """Whether iteration i is memory-bound (``IterationCost.memory_bound``)."""
        return self.d0 + self.d1 * i >= 0

    def memory_total(self, j: int, total: int) -> int:
        """Attoseconds of the memory-bound ones among iterations 0..j-1 (exact; `total`:
        ``self.total(j)``, the answer when all of them are, as in most decode runs)."""
        d0, d1 = self.d0, self.d1
        if d0 >= 0 and d0 + d1 * (j - 1) >= 0:  # first and last memory-bound: all are
            return total
        return _memory_part(self.a_mem, self.b_mem, self.e, d0, d1, j)

    def starts_before(self, limit: int, deadline: int) -> int:
        """How many of iterations 0..limit-1 start before `deadline` (attoseconds from 0).

        Iteration i starts at total(i); durations never decrease (both slopes are >= 0), so
        i * duration(0) <= total(i) <= i * duration(i - 1) brackets the answer.
        """
        if self.total(limit - 1) < deadline:
            return limit
        d0 = self.duration(0)
        hi = min(limit - 1, (deadline - 1) // d0 + 1)  # total(hi) >= deadline
        lo = (deadline - 1) // self.duration(hi)  # total(lo) < deadline
        while hi - lo > 1:  # invariant: total(lo) < deadline <= total(hi)
            mid = (lo + hi) // 2
            if self.total(mid) < deadline:
                lo = mid
            else:
                hi = mid
        return lo + 1


def _memory_part(a_mem: int, b_mem: int, e: int, d0: int, d1: int, j: int) -> int:
    """Attoseconds of the memory-bound iterations among 0..j-1: iteration i is memory-bound
    iff ``d0 + d1*i >= 0`` (an interval of i), and then lasts ``a_mem + b_mem*i + e``."""
    if d1 > 0:  # memory-bound from index ceil(-d0 / d1) on
        lo, hi = min(max(0, -(d0 // d1)), j), j
    elif d1 < 0:  # memory-bound up to index floor(d0 / -d1)
        lo, hi = 0, (min(d0 // -d1 + 1, j) if d0 >= 0 else 0)
    else:
        lo, hi = 0, (j if d0 >= 0 else 0)
    return _series(a_mem, b_mem, lo, hi) + e * max(0, hi - lo)


def _start(e: int, a_hi: int, b_hi: int, a_lo: int, b_lo: int, cross: int, j: int) -> int:
    """When iteration j starts: the time of iterations 0..j-1 (``DecodeRun.total``)."""
    x = cross if cross < j else j
    s_x = (x - 1) * x // 2
    return e * j + a_lo * x + b_lo * s_x + a_hi * (j - x) + b_hi * ((j - 1) * j // 2 - s_x)


def _count_before(
    e: int, a_hi: int, b_hi: int, a_lo: int, b_lo: int, cross: int, limit: int, deadline: int
) -> int:
    """How many of iterations 0..limit-1 start before `deadline` (``DecodeRun.starts_before``,
    the same bracketing: durations never decrease)."""
    if _start(e, a_hi, b_hi, a_lo, b_lo, cross, limit - 1) < deadline:
        return limit
    hi = min(limit - 1, (deadline - 1) // (max(a_hi, a_lo) + e) + 1)  # starts at or after
    lo = (deadline - 1) // (max(a_hi + b_hi * hi, a_lo + b_lo * hi) + e)  # starts before
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _start(e, a_hi, b_hi, a_lo, b_lo, cross, mid) < deadline:
            lo = mid
        else:
            hi = mid
    return lo + 1


def decode_run(
    cost: IterationCost, n: int, context0: int, held0: int, limit: int, deadline: int | None
) -> tuple[int, int, int, int, bool]:
    """The next decode-only iterations of `n` decoders reading `context0` KV tokens and
    holding `held0` (a shared prefix block once): those of 0..limit-1 that start before
    `deadline` (attoseconds from now, > 0; None: all). Returns how many (k >= 1), their
    time, their KV token-attoseconds (``kvstats``), their memory-bound time and whether the
    last one is memory-bound -- what ``DecodeRun`` gives, in one pass."""
    cp, mc = cost.compute_per_pair_as, cost.memory_per_context_as
    a1 = cost.compute_base_as[n] + cp * (context0 + n)
    b1 = cp * n
    a2 = cost.memory_base_as[n] + mc * context0
    b2 = mc * n
    e = cost.other_as[n]
    d0, d1 = a2 - a1, b2 - b1  # iteration i is memory-bound iff d0 + d1*i >= 0
    if d1 > 0 or (d1 == 0 and d0 > 0):  # the memory line is the steeper (or higher) one
        a_hi, b_hi, a_lo, b_lo = a2, b2, a1, b1
    else:
        a_hi, b_hi, a_lo, b_lo = a1, b1, a2, b2
    cross = 0 if a_hi >= a_lo else -((a_hi - a_lo) // (b_hi - b_lo))
    k = limit
    if deadline is not None:
        k = _count_before(e, a_hi, b_hi, a_lo, b_lo, cross, limit, deadline)
    x = cross if cross < k else k
    s_x, s_k = (x - 1) * x // 2, (k - 1) * k // 2  # sums of i over [0, x) and [0, k)
    span = e * k + a_lo * x + b_lo * s_x + a_hi * (k - x) + b_hi * (s_k - s_x)
    q_x, q_k = s_x * (2 * x - 1) // 3, s_k * (2 * k - 1) // 3  # sums of i*i
    weighted = e * s_k + a_lo * s_x + b_lo * q_x + a_hi * (s_k - s_x) + b_hi * (q_k - q_x)
    last = d0 + d1 * (k - 1) >= 0
    memory = span if d0 >= 0 and last else _memory_part(a2, b2, e, d0, d1, k)
    return k, span, (held0 + n) * span + n * weighted, memory, last
