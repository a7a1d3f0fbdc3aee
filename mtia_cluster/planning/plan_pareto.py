"""The Pareto front of points to minimize in every coordinate (cost, p99, energy)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` in every coordinate and better in at least one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates, in input order. Points with a NaN
    coordinate (not measured) are left out; equal points are all kept."""
    ok = [i for i, p in enumerate(points) if not any(math.isnan(x) for x in p)]
    return [i for i in ok if not any(dominates(points[j], points[i]) for j in ok if j != i)]
