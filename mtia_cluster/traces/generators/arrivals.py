"""Arrival processes, vectorized: Poisson, Gamma/Weibull renewal with a target CV,
Markov-modulated on/off bursts, and LoadGen Offline (everything at t=0).

Every function takes a numpy Generator and returns sorted int64 arrival times in ns since the
trace start. Give `n` (exact count) or `duration_s` (all arrivals in [0, duration)).
"""

from __future__ import annotations

import math

import numpy as np

from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_S


def _check_size(n: int | None, duration_s: float | None) -> None:
    if (n is None) == (duration_s is None):
        raise UserError(
            "give exactly one of a request count or a duration",
            field="requests/duration_s",
            value=(n, duration_s),
            has_value=True,
        )
    if n is not None and n < 0:
        raise UserError("request count must be >= 0", field="requests", value=n)
    if duration_s is not None and not (duration_s > 0 and math.isfinite(duration_s)):
        raise UserError("duration must be > 0", field="duration_s", value=duration_s)


def _from_gaps(
    rng: np.random.Generator,
    draw_gaps_s: object,
    rate_per_s: float,
    n: int | None,
    duration_s: float | None,
) -> np.ndarray:
    """Cumulate inter-arrival gaps (seconds) into ns arrivals; extend until duration filled."""
    draw = draw_gaps_s  # callable(rng, count) -> gaps in seconds
    if n is not None:
        gaps = draw(rng, n)  # type: ignore[operator]
        return _to_ns(np.cumsum(gaps))
    assert duration_s is not None
    chunks: list[np.ndarray] = []
    t_end = 0.0
    expected = int(rate_per_s * duration_s)
    while t_end < duration_s:
        count = max(1024, int(expected * 1.05) + 8 * int(math.sqrt(expected + 1)))
        times = t_end + np.cumsum(draw(rng, count))  # type: ignore[operator]
        chunks.append(times)
        t_end = float(times[-1])
        expected = max(int(rate_per_s * (duration_s - t_end)), 0)
    times = np.concatenate(chunks)
    return _to_ns(times[times < duration_s])


def _to_ns(times_s: np.ndarray) -> np.ndarray:
    return np.floor(times_s * NS_PER_S).astype(np.int64)


def _check_rate(rate_per_s: float) -> None:
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise UserError("rate must be > 0", field="rate_per_s", value=rate_per_s)


def poisson(
    rng: np.random.Generator,
    rate_per_s: float,
    *,
    n: int | None = None,
    duration_s: float | None = None,
) -> np.ndarray:
    """Poisson arrivals (exponential gaps), as MLPerf LoadGen's Server scenario."""
    _check_rate(rate_per_s)
    _check_size(n, duration_s)
    scale = 1.0 / rate_per_s
    return _from_gaps(rng, lambda r, k: r.exponential(scale, k), rate_per_s, n, duration_s)


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape k whose coefficient of variation is `cv` (bisection on log k)."""

    def cv_of(k: float) -> float:
        g1 = math.lgamma(1 + 1 / k)
        g2 = math.lgamma(1 + 2 / k)
        return math.sqrt(max(math.exp(g2 - 2 * g1) - 1, 0.0))

    lo, hi = 0.02, 500.0  # cv_of is decreasing in k
    if not cv_of(hi) <= cv <= cv_of(lo):
        raise UserError("Weibull CV out of the supported range", field="cv", value=cv)
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if cv_of(mid) > cv:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def renewal(
    rng: np.random.Generator,
    rate_per_s: float,
    cv: float,
    family: str = "gamma",
    *,
    n: int | None = None,
    duration_s: float | None = None,
) -> np.ndarray:
    """Renewal arrivals whose gaps have mean 1/rate and coefficient of variation `cv`.

    family "gamma": shape 1/cv²; "weibull": shape solved for cv. cv > 1 is bursty, cv < 1
    smoother than Poisson, cv = 1 with gamma is Poisson.
    """
    _check_rate(rate_per_s)
    _check_size(n, duration_s)
    if not (cv > 0 and math.isfinite(cv)):
        raise UserError("CV must be > 0", field="cv", value=cv)
    mean_s = 1.0 / rate_per_s
    if family == "gamma":
        shape = 1.0 / (cv * cv)
        scale = mean_s / shape
        return _from_gaps(rng, lambda r, k: r.gamma(shape, scale, k), rate_per_s, n, duration_s)
    if family == "weibull":
        k_shape = weibull_shape_for_cv(cv)
        w_scale = mean_s / math.exp(math.lgamma(1 + 1 / k_shape))
        return _from_gaps(
            rng, lambda r, k: w_scale * r.weibull(k_shape, k), rate_per_s, n, duration_s
        )
    raise UserError(
        "unknown renewal family, expected gamma or weibull", field="process", value=family
    )


def on_off(
    rng: np.random.Generator,
    on_rate_per_s: float,
    off_rate_per_s: float,
    mean_on_s: float,
    mean_off_s: float,
    *,
    n: int | None = None,
    duration_s: float | None = None,
) -> np.ndarray:
    """Markov-modulated Poisson process with two states (on: burst, off: quiet).

    Sojourns are exponential with the given means; within a sojourn arrivals are Poisson at
    that state's rate. Starts in the on state. Mean rate =
    (on_rate·mean_on + off_rate·mean_off) / (mean_on + mean_off).
    """
    _check_size(n, duration_s)
    if not (on_rate_per_s > 0 and off_rate_per_s >= 0 and mean_on_s > 0 and mean_off_s > 0):
        raise UserError(
            "on/off needs on_rate > 0, off_rate >= 0 and positive mean sojourns",
            field="arrivals",
            value=(on_rate_per_s, off_rate_per_s, mean_on_s, mean_off_s),
            has_value=True,
        )
    mean_rate = (on_rate_per_s * mean_on_s + off_rate_per_s * mean_off_s) / (mean_on_s + mean_off_s)
    horizon_s = duration_s if duration_s is not None else 1.1 * (n or 0) / mean_rate + 1.0
    out: list[np.ndarray] = []
    t0, total = 0.0, 0
    while True:
        cycles = max(16, int(horizon_s / (mean_on_s + mean_off_s) * 1.2) + 16)
        on_len = rng.exponential(mean_on_s, cycles)
        off_len = rng.exponential(mean_off_s, cycles)
        lens = np.column_stack([on_len, off_len]).ravel()
        rates = np.tile([on_rate_per_s, off_rate_per_s], cycles)
        starts = t0 + np.concatenate(([0.0], np.cumsum(lens)[:-1]))
        counts = rng.poisson(rates * lens)
        offsets = rng.random(int(counts.sum())) * np.repeat(lens, counts)
        times = np.sort(np.repeat(starts, counts) + offsets)
        out.append(times)
        total += len(times)
        t0 = float(starts[-1] + lens[-1])
        if (duration_s is not None and t0 >= duration_s) or (n is not None and total >= n):
            break
    times = np.concatenate(out)
    times = times[times < duration_s] if duration_s is not None else times[:n]
    return _to_ns(times)


def offline(n: int) -> np.ndarray:
    """LoadGen Offline: all n queries arrive at t=0."""
    if n < 0:
        raise UserError("request count must be >= 0", field="requests", value=n)
    return np.zeros(n, dtype=np.int64)
