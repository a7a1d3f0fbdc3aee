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


def _sum_i(j: int) -> int:
    """Sum of i for i in [0, j)."""
    return (j - 1) * j // 2 if j > 0 else 0


def _sum_i2(j: int) -> int:
    """Sum of i*i for i in [0, j)."""
    return (j - 1) * j * (2 * j - 1) // 6 if j > 0 else 0


def decode_run_token_as(run: DecodeRun, held0: int, n: int, k: int, total: int) -> int:
    """Sum over decode-only iterations i < k of ``(held0 + n*(i+1)) x duration(i)``:
    token-attoseconds of a run whose n decoders hold `held0` tokens before it (`total`:
    ``run.total(k)``, which the caller has)."""
    if k <= 0:
        return 0
    x = min(run.cross, k)
    # sum of i * duration(i) = e * sum(i) + sum over each linear piece of i * (a + b*i)
    s_k, s_x, q_k, q_x = _sum_i(k), _sum_i(x), _sum_i2(k), _sum_i2(x)
    weighted = (
        run.e * s_k
        + run.a_lo * s_x
        + run.b_lo * q_x
        + run.a_hi * (s_k - s_x)
        + run.b_hi * (q_k - q_x)
    )
    return (held0 + n) * total + n * weighted
