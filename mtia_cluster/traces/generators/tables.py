"""Size distributions shipped as constants, with their sources, so the package needs no data.

MLPERF_DLRM_V2_QUANTILES: the 20 query sizes (user-item pairs per query) of MLPerf Inference
DLRM-v2, from mlcommons/inference recommendation/dlrm_v2/pytorch/tools/dist_quantile.txt
(Apache-2.0). The reference harness (recommendation/dlrm_v2/pytorch/python/multihot_criteo.py,
MultihotCriteo) draws `quantile[np.random.randint(0, 20)]` per query, i.e. one of the 20
values uniformly: mean 270, range 100-700.

AZURE_2023_*: quantile tables of the Azure LLM inference traces of November 2023
(Azure/AzurePublicDataset @ b469a113, data/AzureLLMInferenceTrace_{code,conv}.csv),
licensed CC-BY-4.0: "Azure LLM inference trace 2023, Microsoft Azure, from Patel et al.,
Splitwise: Efficient generative LLM inference using phase splitting, ISCA 2024". Each table
holds the linear-interpolated quantiles at `QUANTILE_LEVELS` of one column, made by
:func:`fit_quantile_table` (tests refit them from ../shared/data and compare). Sampling
inverts the piecewise-linear CDF through these points; marginals only, input and output
drawn independently (in the traces they are nearly uncorrelated: Spearman -0.02 code,
0.07 conv).
"""

from __future__ import annotations

import numpy as np

MLPERF_DLRM_V2_QUANTILES: tuple[int, ...] = (
    100,
    100,
    200,
    200,
    200,
    200,
    200,
    200,
    200,
    200,
    200,
    200,
    200,
    200,
    300,
    300,
    400,
    500,
    600,
    700,
)

QUANTILE_LEVELS: tuple[float, ...] = (
    0.0,
    0.01,
    0.02,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.55,
    0.6,
    0.65,
    0.7,
    0.75,
    0.8,
    0.85,
    0.9,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.999,
    1.0,
)

# name -> (input_tokens quantiles, output_tokens quantiles)
AZURE_2023: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "azure-2023-code": (
        (
            3.0,
            17.0,
            35.0,
            75.0,
            147.0,
            232.0,
            385.6,
            578.0,
            770.0,
            938.6,
            1075.0,
            1261.1,
            1469.0,
            1690.0,
            1909.0,
            2163.7,
            2433.0,
            2744.5,
            3192.4,
            3920.2,
            5187.6,
            7303.3,
            7435.0,
            7436.0,
            7436.0,
            7436.0,
            7437.0,
            7437.0,
        ),
        (
            6.0,
            6.0,
            6.0,
            6.0,
            7.0,
            7.0,
            8.0,
            9.0,
            9.0,
            10.0,
            11.0,
            12.0,
            13.0,
            14.0,
            16.0,
            18.0,
            20.0,
            24.0,
            29.0,
            39.0,
            55.0,
            90.0,
            128.0,
            170.9,
            251.5,
            359.4,
            825.3,
            1899.0,
        ),
    ),
    "azure-2023-conv": (
        (
            2.0,
            29.0,
            91.0,
            181.0,
            207.0,
            372.0,
            387.0,
            396.0,
            403.0,
            414.0,
            703.0,
            984.0,
            1020.0,
            1045.0,
            1071.0,
            1097.0,
            1130.0,
            1189.0,
            1315.0,
            1876.2,
            2734.5,
            4083.0,
            4090.0,
            4098.0,
            4142.0,
            4831.0,
            6179.1,
            14050.0,
        ),
        (
            7.0,
            16.0,
            24.0,
            41.0,
            54.0,
            67.0,
            77.0,
            85.0,
            91.0,
            96.0,
            103.0,
            113.0,
            129.0,
            151.0,
            177.0,
            217.0,
            384.0,
            395.0,
            400.0,
            411.0,
            424.0,
            451.0,
            509.0,
            540.0,
            601.0,
            643.2,
            954.0,
            1000.0,
        ),
    ),
}


def fit_quantile_table(values: np.ndarray) -> tuple[float, ...]:
    """The quantiles of `values` at QUANTILE_LEVELS, rounded to 0.1 (how tables were made)."""
    q = np.quantile(np.asarray(values, dtype=np.float64), QUANTILE_LEVELS, method="linear")
    return tuple(round(float(x), 1) for x in q)


def sample_quantile_table(rng: np.random.Generator, table: tuple[float, ...], n: int) -> np.ndarray:
    """Draw n integers (>= 1) by inverting the piecewise-linear CDF through `table`."""
    u = rng.random(n)
    x = np.interp(u, QUANTILE_LEVELS, table)
    return np.maximum(np.rint(x), 1).astype(np.int32)
