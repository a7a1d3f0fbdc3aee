"""Request sizes: R&R query sizes (items) and LLM prompt/generation lengths (tokens).

All samplers are vectorized and return int32 arrays of values >= 1.
- mlperf-dlrm-v2: one of MLPerf DLRM-v2's 20 query-size quantiles, uniformly (mean 270).
- lognormal(mean, p99[, max]): the lognormal with that mean and 99th percentile, capped.
- pareto(mean, p99[, max]): a Pareto (type I) tail with that mean and p99, capped.
- azure-2023-code / azure-2023-conv: empirical quantile tables (tables.py, CC-BY-4.0).
- constant(value).

Specs are the typed models of config/trace_spec.py, validated (keys, types, ranges) before
any draw; here only the fits' own feasibility (mean < p99, p99/mean reachable) is checked.
"""

from __future__ import annotations

import math

import numpy as np

from mtia_cluster.config.trace_spec import (
    ConstantSizes,
    FittedSizes,
    MLPerfSizes,
    SeparateLengths,
    ServeGenLengths,
    TableLengths,
)
from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators.tables import (
    AZURE_2023,
    MLPERF_DLRM_V2_QUANTILES,
    sample_quantile_table,
)

Z99 = 2.3263478740408408  # standard normal 0.99 quantile
INT32_MAX = 2**31 - 1

# The validated shapes of config/trace_spec.py's ``Sizes`` and ``Lengths`` unions.
SizeSpec = MLPerfSizes | FittedSizes | ConstantSizes
LengthSpec = TableLengths | ServeGenLengths | SeparateLengths


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


def sample_sizes(rng: np.random.Generator, spec: SizeSpec, n: int) -> np.ndarray:
    """Draw n sizes from the (validated) distribution `spec` (see module docstring)."""
    if isinstance(spec, MLPerfSizes):
        table = np.asarray(MLPERF_DLRM_V2_QUANTILES, dtype=np.int32)
        return table[rng.integers(0, len(table), n)]
    if isinstance(spec, ConstantSizes):
        return np.full(n, spec.value, dtype=np.int32)
    if spec.dist == "lognormal":
        mu, sigma = lognormal_params(spec.mean, spec.p99)
        return _finish(rng.lognormal(mu, sigma, n), spec.max)
    x_min, alpha = pareto_params(spec.mean, spec.p99)
    return _finish(x_min * (1 + rng.pareto(alpha, n)), spec.max)


def sample_lengths(
    rng: np.random.Generator, spec: LengthSpec, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n (input_tokens, output_tokens) pairs.

    spec: azure-2023-code|azure-2023-conv (empirical marginals), servegen (a ServeGen dataset
    JSON's PMFs, one window or all pooled), or separate input/output size specs, e.g.
    lognormal with caps.
    """
    if isinstance(spec, TableLengths):
        q_in, q_out = AZURE_2023[spec.dist]
        return sample_quantile_table(rng, q_in, n), sample_quantile_table(rng, q_out, n)
    if isinstance(spec, ServeGenLengths):
        from mtia_cluster.traces.generators.servegen import sample_servegen_lengths

        return sample_servegen_lengths(rng, spec, n)
    return sample_sizes(rng, spec.input, n), sample_sizes(rng, spec.output, n)
