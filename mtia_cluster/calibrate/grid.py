"""The deterministic grid search every `calibrate` fit uses (MAPE over a fixed grid).

Minimise the mean absolute percentage error over a fixed grid, then over a finer grid centred
on the best point, twice; ties go to the first grid point. No randomness and no dependence on
row order beyond the mean: the same rows give the same numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

US = 1e-6
Loss = Callable[[tuple[float, ...]], float]


def grid_min(loss: Loss, axes: Sequence[np.ndarray], refine: int = 2) -> tuple[float, ...]:
    """Best point of a grid, then of finer grids around it (`refine` times)."""
    best: tuple[float, ...] = ()
    for level in range(refine + 1):
        points = list(itertools.product(*axes))
        values = [loss(pt) for pt in points]
        best = tuple(float(x) for x in points[int(np.argmin(values))])
        if level == refine:
            break
        axes = [_around(a, b) for a, b in zip(axes, best, strict=True)]
    return best


def _around(axis: np.ndarray, centre: float) -> np.ndarray:
    if len(axis) < 2:
        return axis
    step = float(np.min(np.diff(np.sort(axis))))
    lo, hi = float(axis.min()), float(axis.max())
    return np.unique(np.clip(centre + step * np.linspace(-1, 1, 9), lo, hi))


def mape(pred: np.ndarray, meas: np.ndarray) -> float:
    """Mean of |predicted / measured - 1|."""
    return float(np.mean(np.abs(pred / meas - 1.0)))


def fit_two(
    x: np.ndarray, meas: np.ndarray, additive: bool, top_us: float | None = None
) -> tuple[float, float, float]:
    """Fit (fraction, floor_or_latency_us, MAPE) for t = max(floor, x/f) or t = lat + x/f;
    the floor or latency is searched over 0..`top_us` (default: 400 additive, else 100)."""

    def loss(pt: tuple[float, ...]) -> float:
        f, c = pt
        pred = c * US + x / f if additive else np.maximum(c * US, x / f)
        return mape(pred, meas)

    if top_us is None:
        top_us = 400.0 if additive else 100.0  # collective latencies reach ~100s of us
    axes = [np.linspace(0.02, 1.0, 50), np.linspace(0.0, top_us, 51)]
    best = grid_min(loss, axes)
    return best[0], best[1], loss(best)
