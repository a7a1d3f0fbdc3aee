"""Bracketing search for the highest offered rate that meets an SLO (MLPerf Server style).

`evaluate(rates) -> passed` judges several candidate rates at once (the caller runs them as
parallel replays, e.g. Ray tasks); each round evaluates `parallel` rates spread geometrically
inside the current bracket [highest passing, lowest failing] and shrinks it, until the
bracket's relative width is below `rel_tol`. The answer is the highest rate seen to pass.

Replays at different rates share their random streams (common random numbers), so the
verdict is close to monotone in the rate; where noise makes it non-monotone, the search keeps
the lowest failing rate above the highest passing one, which errs on the side of safety.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mtia_cluster.errors import UserError


@dataclass
class SearchResult:
    """The answer and every evaluation made to reach it (for reports and tests)."""

    best_rate: float  # highest rate that met the SLO (0.0 if none did)
    lowest_failing: float  # lowest rate above best_rate that failed (inf if none)
    evaluations: list[tuple[float, bool]] = field(default_factory=list)
    rounds: int = 0

    @property
    def rel_width(self) -> float:
        if self.best_rate <= 0 or not np.isfinite(self.lowest_failing):
            return float("inf")
        return self.lowest_failing / self.best_rate - 1.0


def _spread(lo: float, hi: float, n: int) -> list[float]:
    """`n` rates strictly inside (lo, hi), geometrically spaced."""
    return [float(x) for x in np.geomspace(lo, hi, n + 2)[1:-1]]


def _rounds_left(res: SearchResult, parallel: int, rel_tol: float) -> int:
    """Rounds still needed: one more to bracket, then each round cuts the log-width of the
    bracket by (parallel + 1)."""
    if res.best_rate == 0.0 or not math.isfinite(res.lowest_failing):
        return 1 + _rounds_left(SearchResult(1.0, 2.0), parallel, rel_tol)
    width = res.rel_width
    if width <= rel_tol:
        return 0
    return math.ceil(math.log(math.log1p(width) / math.log1p(rel_tol)) / math.log(parallel + 1))


def _bracket(
    run: Callable[[list[float]], None],
    res: SearchResult,
    initial_rate: float,
    parallel: int,
    max_rounds: int,
    min_rate: float,
    max_rate: float,
    step: float = 2.0,
) -> bool:
    """Evaluate rates around `initial_rate` spaced by `step`, then further down (all failed)
    or up (all passed), by factors growing each round (squared, at most doubled: 2, 4, 8, ...
    from the default step; 1.25, 1.56, 2.44, 4.9, ... from a good guess's), until `res`
    holds a passing rate below a failing one. False when it never will: every rate down to
    `min_rate` failed, or every rate up to `max_rate` passed."""
    factor = step
    run([initial_rate * factor**k for k in range(-(parallel // 2), parallel - parallel // 2)])
    while res.rounds < max_rounds and (res.best_rate == 0.0 or not np.isfinite(res.lowest_failing)):
        if res.best_rate == 0.0:  # everything failed: go lower
            low = min(r for r, _ in res.evaluations)
            if low <= min_rate:
                return False
            rates = [low / factor ** (k + 1) for k in range(parallel)]
        else:  # everything passed: go higher
            high = max(r for r, _ in res.evaluations)
            if high >= max_rate:
                return False
            rates = [high * factor ** (k + 1) for k in range(parallel)]
        factor = min(factor * factor, factor * 2.0)
        run(rates)
    return True


def find_max_rate(
    evaluate: Callable[[Sequence[float]], Sequence[bool]],
    initial_rate: float,
    *,
    parallel: int = 4,
    rel_tol: float = 0.02,
    max_rounds: int = 20,
    min_rate: float = 1e-6,
    max_rate: float = float("inf"),
    on_round: Callable[[SearchResult, int], None] | None = None,
    step: float = 2.0,
) -> SearchResult:
    """Highest rate with `evaluate` True, starting from a guess `initial_rate` (> 0).

    Rates above `max_rate` are never tried; when every rate up to it passes, the search stops
    with `best_rate == max_rate` and no failing rate (the caller decides what that means).
    Rates below `min_rate` are never tried either (a capacity search's floor: its trace at
    a lower rate would span too long, planning/capacity.py); when it fails too, the search
    stops with `best_rate == 0`.
    `on_round(result, evaluations_left)` is called after each round with an estimate of the
    evaluations still to come (for a progress display). `step` (> 1) spaces the first
    round's rates: 2 for a rough guess, less for one from a cost model near the knee.
    """
    if not initial_rate > 0:
        raise UserError("initial rate must be > 0", field="initial_rate", value=initial_rate)
    if not step > 1:
        raise UserError("the bracketing step must be > 1", field="step", value=step)
    if parallel < 1:
        raise UserError("need at least one parallel evaluation", field="parallel", value=parallel)
    res = SearchResult(best_rate=0.0, lowest_failing=float("inf"))

    def run(rates: list[float]) -> None:
        rates = sorted({max(min(r, max_rate), min_rate) for r in rates})
        verdicts = list(evaluate(rates))
        if len(verdicts) != len(rates):
            raise ValueError("evaluate must return one verdict per rate")
        res.rounds += 1
        for r, ok in zip(rates, verdicts, strict=True):
            res.evaluations.append((r, bool(ok)))
            if ok and r > res.best_rate:
                res.best_rate = r
        failing = [r for r, ok in res.evaluations if not ok and r > res.best_rate]
        res.lowest_failing = min(failing, default=float("inf"))
        if on_round is not None:
            on_round(res, parallel * _rounds_left(res, parallel, rel_tol))

    # Phase 1: bracket. Grow or shrink geometrically around the guess until one rate passes
    # and a higher one fails.
    if not _bracket(run, res, initial_rate, parallel, max_rounds, min_rate, max_rate, step):
        return res
    # Phase 2: shrink the bracket.
    while res.rounds < max_rounds and res.rel_width > rel_tol:
        run(_spread(res.best_rate, res.lowest_failing, parallel))
    return res
