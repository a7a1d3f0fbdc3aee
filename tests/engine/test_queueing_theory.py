"""The engine against queueing theory: M/M/1, M/D/1, M/M/c mean waits and Little's law.

Each case drives a SyntheticCell window by window (1 s windows, as the simulation would)
with Poisson arrivals, and compares the mean wait in queue with the closed form. The sample
size comes from the variance: Blomqvist's asymptotic variance of the M/M/1 mean wait,
``rho (2 + 5 rho - 4 rho^2 + rho^3) / (1 - rho)^4`` (in units of the mean service time
squared), sized so that the 2% tolerance is 3 standard errors; the test also measures the
standard error by batch means and requires it to be below 1% so that passing means
something. Little's law is checked on every run with L sampled from the cell's own load
reports at every window boundary (an independent code path from the per-request times),
within three batch-means standard errors of that sampled average (plus 0.5%). Every window's
output must finish inside that window, which ties the reports to the per-request times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.synthetic import SyntheticCell

MEAN_S = 1e-3
WINDOW_NS = 1_000_000_000  # 1000 mean service times
TOLERANCE = 0.02


def erlang_c(c: int, offered: float) -> float:
    """Probability of waiting in M/M/c with offered load `offered` = lambda/mu."""
    rho = offered / c
    term = 1.0
    total = 1.0
    for k in range(1, c):
        term *= offered / k
        total += term
    tail = term * offered / c / (1 - rho)
    return tail / (total + tail)


def closed_form_wait_s(kind: str, c: int, rho: float) -> float:
    """Mean wait in queue (seconds) for M/M/1, M/D/1, M/M/c."""
    mu = 1 / MEAN_S
    if kind == "M/M/1":
        return rho / (mu * (1 - rho))
    if kind == "M/D/1":
        return rho / (2 * mu * (1 - rho))
    lam = rho * c * mu
    return erlang_c(c, lam / mu) / (c * mu - lam)


def sample_size(rho: float) -> int:
    """Requests needed so that 2% is 3 standard errors of the M/M/1 mean wait."""
    var_units = rho * (2 + 5 * rho - 4 * rho**2 + rho**3) / (1 - rho) ** 4
    mean_units = rho / (1 - rho)
    return math.ceil(var_units * (3.0 / (TOLERANCE * mean_units)) ** 2)


PILOT = 300_000


def required_size(distribution: str, c: int, rho: float) -> int:
    """The larger of the M/M/1 formula and what a pilot run's measured variance needs.

    M/M/c waits have a larger relative variance than M/M/1 at the same load (most requests
    do not wait), so a pilot run (another seed) measures it by batch means.
    """
    pilot = simulate(distribution, c, rho, PILOT, seed=1001)
    measured = math.ceil(PILOT * (pilot.batch_means_se / (TOLERANCE / 3.0)) ** 2)
    return max(sample_size(rho), measured)


@dataclass
class Run:
    mean_wait_s: float
    batch_means_se: float  # relative standard error of the mean wait, by batch means
    little_l: float  # time-average number in system, from the cell's reports
    little_lw: float  # arrival rate x mean sojourn
    little_se: float  # standard error of little_l, by batch means
    count: int


def simulate(
    distribution: str, c: int, rho: float, n: int, seed: int = 7, window_ns: int = WINDOW_NS
) -> Run:
    """Drive one SyntheticCell with n Poisson arrivals in 1 s windows."""
    cell = SyntheticCell(
        accelerator_ids=np.arange(c),
        host_id=0,
        rng=entity_rng(seed, 3, 0),
        distribution=distribution,
        mean_s=MEAN_S,
    )
    arrivals = entity_rng(seed, 4, 0)
    lam_per_ns = rho * c / MEAN_S / 1e9
    chunk = 1 << 20
    t_ns, done_n, window_end = 0, 0, window_ns
    waits, sojourns, outstanding = [], [], []
    for first in range(0, n, chunk):
        m = min(chunk, n - first)
        gaps = np.ceil(arrivals.standard_exponential(m) / lam_per_ns).astype(np.int64)
        arr = t_ns + np.cumsum(gaps)
        t_ns = int(arr[-1])
        ids = np.arange(first, first + m, dtype=np.int64)
        edges = np.arange(window_end, t_ns + window_ns, window_ns, dtype=np.int64)
        cuts = np.searchsorted(arr, edges, side="left")
        lo = 0
        for edge, hi in zip(edges.tolist(), cuts.tolist(), strict=True):
            if hi > lo:
                cell.submit(make_requests(arr[lo:hi], request_id=ids[lo:hi]))
            if hi == m and first + m < n:
                window_end = edge  # this window continues with the next chunk
                break
            out = cell.advance(edge)
            assert np.all(out.finish_ns < edge) and np.all(out.finish_ns >= edge - window_ns)
            waits.append(out.start_ns - out.arrival_ns)
            sojourns.append(out.finish_ns - out.arrival_ns)
            done_n += len(out)
            outstanding.append(cell.report().outstanding)
            lo = hi
            window_end = edge + window_ns
    span_ns = len(outstanding) * window_ns
    out = cell.advance(1 << 62)
    waits.append(out.start_ns - out.arrival_ns)
    sojourns.append(out.finish_ns - out.arrival_ns)
    w = np.concatenate(waits).astype(np.float64) / 1e9
    s = np.concatenate(sojourns).astype(np.float64) / 1e9
    se = batch_means_se(w) / w.mean()
    samples = np.asarray(outstanding, dtype=np.float64)
    return Run(
        mean_wait_s=float(w.mean()),
        batch_means_se=float(se),
        little_l=float(samples.mean()),
        little_lw=n / (span_ns / 1e9) * float(s.mean()),
        little_se=batch_means_se(samples),
        count=len(w),
    )


def batch_means_se(x: np.ndarray, batches: int = 50) -> float:
    """Standard error of the mean of a correlated series, by non-overlapping batch means."""
    means = x[: len(x) // batches * batches].reshape(batches, -1).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(batches))


def assert_little(run: Run) -> None:
    """L (sampled reports) = lambda W within 3 standard errors of L plus 0.5%."""
    assert abs(run.little_l - run.little_lw) < 3 * run.little_se + 0.005 * run.little_lw, (
        run.little_l,
        run.little_lw,
        run.little_se,
    )


CASES = [
    (kind, c, rho)
    for kind, c in (("M/M/1", 1), ("M/D/1", 1), ("M/M/c", 4))
    for rho in (0.5, 0.8, 0.95)
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "c", "rho"), CASES, ids=[f"{k}-{r}" for k, _, r in CASES])
def test_mean_wait_matches_closed_form(kind: str, c: int, rho: float) -> None:
    dist = "deterministic" if kind == "M/D/1" else "exponential"
    n = required_size(dist, c, rho)
    run = simulate(dist, c, rho, n)
    expected = closed_form_wait_s(kind, c, rho)
    assert run.count == n
    assert run.batch_means_se < 0.01, "sample too small for a meaningful 2% check"
    assert abs(run.mean_wait_s / expected - 1) < TOLERANCE, (run.mean_wait_s, expected)
    assert_little(run)


def test_erlang_c_reduces_to_mm1() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    assert closed_form_wait_s("M/M/c", 1, 0.8) == pytest.approx(closed_form_wait_s("M/M/1", 1, 0.8))


def test_little_law_small_run() -> None:
    run = simulate("lognormal", 2, 0.7, 200_000, seed=3, window_ns=10_000_000)
    assert run.little_se < 0.1 * run.little_lw  # enough samples to mean something
    assert_little(run)
