"""Time integral of the KV tokens a replica holds, exact in integers (issue #15).

A replica's KV utilization over a time span is ``integral of held tokens dt / (capacity x
span)``. An iteration holds, until it ends, the KV of every running request as written by
that iteration (its context plus the tokens it computes; waiting and preempted requests hold
none, cached prefix blocks of finished requests are not "held", a prefix block shared by
several running requests counts once: ``BlockPool.shared``). The scheduler adds
``held x duration`` per iteration; a run of ``k`` decode-only iterations adds the closed form
below, so cutting a run anywhere (window bounds) gives the same integer: the integral at a
time is a function of that time only, like the rows.
"""

from __future__ import annotations

from mtia_cluster.engine.llm.stretch import DecodeRun


def _sum_i(j0: int, j1: int) -> int:
    """Sum of i for i in [j0, j1)."""
    return (j0 + j1 - 1) * (j1 - j0) // 2 if j1 > j0 else 0


def _sum_i2(j0: int, j1: int) -> int:
    """Sum of i*i for i in [j0, j1)."""

    def below(j: int) -> int:  # sum of i*i for i in [0, j)
        return (j - 1) * j * (2 * j - 1) // 6 if j > 0 else 0

    return below(j1) - below(j0) if j1 > j0 else 0


def decode_run_token_as(run: DecodeRun, held0: int, n: int, k: int) -> int:
    """Sum over decode-only iterations i < k of ``(held0 + n*(i+1)) x duration(i)``:
    token-attoseconds of a run whose n decoders hold `held0` tokens before it."""
    if k <= 0:
        return 0
    x = min(run.cross, k)
    # sum of i * duration(i) = e * sum(i) + sum over each linear piece of i * (a + b*i)
    weighted = (
        run.e * _sum_i(0, k)
        + run.a_lo * _sum_i(0, x)
        + run.b_lo * _sum_i2(0, x)
        + run.a_hi * _sum_i(x, k)
        + run.b_hi * _sum_i2(x, k)
    )
    return (held0 + n) * run.total(k) + n * weighted
