"""Request sizes: R&R query sizes (items) and LLM prompt/generation lengths (tokens).

All samplers are vectorized and return int32 arrays of values >= 1.
- mlperf-dlrm-v2: one of MLPerf DLRM-v2's 20 query-size quantiles, uniformly (mean 270).
- lognormal(mean, p99[, max]): the lognormal with that mean and 99th percentile, capped.
- pareto(mean, p99[, max]): a Pareto (type I) tail with that mean and p99, capped.
- azure-2023-code / azure-2023-conv: empirical quantile tables (tables.py, CC-BY-4.0).
- constant(value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mtia_cluster.config import Fields
from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators.tables import (
    AZURE_2023,
    MLPERF_DLRM_V2_QUANTILES,
    sample_quantile_table,
)

Z99 = 2.3263478740408408  # standard normal 0.99 quantile
INT32_MAX = 2**31 - 1


def lognormal_params(mean: float, p99: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with the given mean and p99 (the smaller sigma root)."""
    if not (0 < mean < p99):
        raise UserError(
            "lognormal needs 0 < mean < p99", field="mean/p99", value=(mean, p99), has_value=True
        )
    d = math.log(p99) - math.log(mean)  # = z·σ − σ²/2
    disc = Z99 * Z99 - 2 * d
    if disc < 0:
        raise UserError(
            "p99/mean too large for a lognormal (max e^(z²/2) ≈ 15)", field="p99", value=p99
        )
    sigma = Z99 - math.sqrt(disc)
    return math.log(mean) - sigma * sigma / 2, sigma


def pareto_params(mean: float, p99: float) -> tuple[float, float]:
    """(x_min, alpha) of a Pareto I with this mean and p99 (alpha on the decreasing branch)."""
    if not (0 < mean < p99):
        raise UserError(
            "pareto needs 0 < mean < p99", field="mean/p99", value=(mean, p99), has_value=True
        )

    def ratio(alpha: float) -> float:  # p99 / mean
        return (alpha - 1) / alpha * 100 ** (1 / alpha)

    grid = np.linspace(1.0001, 5.0, 4000)
    peak_alpha = float(grid[np.argmax([ratio(a) for a in grid])])
    target = p99 / mean
    if target > ratio(peak_alpha):
        raise UserError(
            f"p99/mean above {ratio(peak_alpha):.2f} is impossible for a Pareto",
            field="p99",
            value=p99,
        )
    lo, hi = peak_alpha, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        if ratio(mid) > target:
            lo = mid
        else:
            hi = mid
    alpha = (lo + hi) / 2
    return mean * (alpha - 1) / alpha, alpha


def _finish(values: np.ndarray, cap: float | None) -> np.ndarray:
    x = np.rint(values)
    if cap is not None:
        x = np.minimum(x, cap)
    return np.clip(x, 1, INT32_MAX).astype(np.int32)


def sample_sizes(
    rng: np.random.Generator, spec: Mapping[str, Any], n: int, file: Any = None, prefix: str = ""
) -> np.ndarray:
    """Draw n sizes from the distribution described by `spec` (see module docstring)."""
    f = Fields(spec, file, prefix)
    dist = f.str(
        "dist", choices=["mlperf-dlrm-v2", "lognormal", "pareto", "constant", *AZURE_2023.keys()]
    )
    cap = f.number("max", None, positive=True) if f.has("max") else None
    if dist == "mlperf-dlrm-v2":
        table = np.asarray(MLPERF_DLRM_V2_QUANTILES, dtype=np.int32)
        return table[rng.integers(0, len(table), n)]
    if dist == "constant":
        return np.full(n, f.int("value", positive=True), dtype=np.int32)
    if dist == "lognormal":
        mu, sigma = lognormal_params(
            f.number("mean", positive=True), f.number("p99", positive=True)
        )
        return _finish(rng.lognormal(mu, sigma, n), cap)
    if dist == "pareto":
        x_min, alpha = pareto_params(
            f.number("mean", positive=True), f.number("p99", positive=True)
        )
        return _finish(x_min * (1 + rng.pareto(alpha, n)), cap)
    raise UserError(
        "this distribution gives token pairs, use it under lengths",
        file=file,
        field=f.path("dist"),
        value=dist,
    )


def sample_lengths(
    rng: np.random.Generator, spec: Mapping[str, Any], n: int, file: Any = None, prefix: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n (input_tokens, output_tokens) pairs.

    spec: {dist: azure-2023-code|azure-2023-conv} (empirical marginals), {dist: servegen,
    path: chunk-N-dataset.json[, window]} (ServeGen PMFs), or {input: <size spec>, output:
    <size spec>} for independent parametric lengths, e.g. lognormal with caps.
    """
    f = Fields(spec, file, prefix)
    dist = f.str("dist", "separate")
    if dist in AZURE_2023:
        q_in, q_out = AZURE_2023[dist]
        return sample_quantile_table(rng, q_in, n), sample_quantile_table(rng, q_out, n)
    if dist == "servegen":
        from mtia_cluster.traces.generators.servegen import sample_servegen_lengths

        return sample_servegen_lengths(rng, f, n)
    if dist != "separate":
        raise f.error(
            "dist",
            "unknown length distribution, expected azure-2023-code, "
            "azure-2023-conv, servegen, or input/output size specs",
            dist,
        )
    inp = sample_sizes(rng, f.sub("input").data, n, file, f.path("input"))
    out = sample_sizes(rng, f.sub("output").data, n, file, f.path("output"))
    return inp, out
