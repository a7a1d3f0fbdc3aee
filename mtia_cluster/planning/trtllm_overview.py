"""TensorRT-LLM's published H100 FP8 throughput tables, replayed; the MoE expert-GEMM fit.

Tables of NVIDIA/TensorRT-LLM's docs/source/performance/perf-overview.md (all `all requests
queued at once, fixed ISL/OSL` offline runs on H100 SXM 80GB, FP8 weights and KV cache,
metric total output tokens/s of the system); provenance and run settings per table in
``benchmarks/trtllm_perf_overview.py``, which prints the comparison, and docs/validation.md.
Each row replays its ``$num_requests`` through :func:`llm_offline_replay` (all at t = 0,
guaranteed_no_evict admission).

**MoE expert-GEMM fit** (``moe.expert_gemm_peak_scale`` of the nvidia-gpu family, read by
``perf/moe.py``): the one number ``s`` by which the routed experts' grouped GEMMs fall short
of the dense GEMM peak fraction, fitted on ONE published set -- the v0.13.0 Mixtral 8x7B TP2
rows (``ROWS_V013``), the page whose dense Llama-2-70B TP2 rows the model matches best
(3.6% MAPE), so that its MoE residual is the MoE path's -- by minimising the MAPE of
simulated / published throughput over ``SCALE_GRID`` refined twice around the best point
(``calibrate.grid.grid_min``; deterministic, ties to the smaller value). v0.11.0's Mixtral
rows and the 2025 Llama 4 Maverick rows are held out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtia_cluster.calibrate.grid import grid_min
from mtia_cluster.catalog import Catalog, Chip
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.planning.llm_server import LengthDist, llm_offline_replay
from mtia_cluster.workloads import LLMModel

V013_URL = (
    "https://raw.githubusercontent.com/NVIDIA/TensorRT-LLM/v0.13.0/docs/source/performance/"
    "perf-overview.md"
)


@dataclass(frozen=True)
class Row:
    """One published row: model, system layout, lengths, requests, result and the limits
    it is replayed with (max tokens per step, max sequences)."""

    model: str
    tp: int
    isl: int
    osl: int
    requests: int
    published: float  # total output tokens/s of the tp x ep system
    max_tokens: int
    max_seqs: int
    ep: int = 1
    gpu: str = "h100"  # catalog chip the row ran on
    dtype: str = "fp8"  # weights; the KV cache is FP8 when the weights are FP8 or FP4


def _rows(model: str, tp: int, tokens: int, seqs: int, data, ep: int = 1) -> tuple[Row, ...]:
    return tuple(Row(model, tp, i, o, n, pub, tokens, seqs, ep) for i, o, n, pub in data)


# 2025, PyTorch backend (@ 00f37686aa854010d68bcbd0f4ab000221541ca6), "Llama 3.3 70B", H100
# TP2 (FP8), replayed as llama-3.1-70b with 8,192 tokens and 2,048 sequences.
ROWS_2025 = _rows(
    "llama-3.1-70b",
    2,
    8192,
    2048,
    [
        (128, 128, 30_000, 6_378),
        (128, 2048, 3_000, 6_651),
        (500, 2000, 3_000, 5_222),
        (1000, 1000, 3_000, 4_205),
        (2048, 128, 3_000, 762),
        (2048, 2048, 1_500, 3_082),
    ],
)
# v0.11.0 (July 2024): max_num_tokens / max_batch_size as published per model and TP.
ROWS_V011 = (
    _rows(
        "llama-2-70b",
        2,
        2048,
        2048,
        [
            (128, 128, 30_000, 6_502.44),
            (2048, 128, 3_000, 747.14),
            (128, 2048, 3_000, 5_267.56),
            (2048, 2048, 1_500, 2_457.73),
        ],
    )
    + _rows(
        "llama-2-70b",
        4,
        8192,
        4096,
        [
            (128, 128, 30_000, 10_448.46),
            (2048, 128, 3_000, 1_231.26),
            (128, 2048, 3_000, 9_202.42),
            (2048, 2048, 1_500, 4_586.99),
        ],
    )
    + _rows(
        "mixtral-8x7b",
        2,
        3072,
        2048,
        [
            (128, 128, 30_000, 24_770.44),
            (2048, 128, 3_000, 2_973.11),
            (128, 2048, 3_000, 22_120.85),
            (2048, 2048, 1_500, 11_486.66),
        ],
    )
)
# v0.13.0 (October 2024): trtllm-bench's own limits (not published per row); the doc's
# printed example runtime, 8,192 tokens and 4,096 sequences.
ROWS_V013 = _rows(
    "llama-2-70b",
    2,
    8192,
    4096,
    [
        (128, 128, 30_000, 6_432.82),
        (128, 2048, 3_000, 5_775.34),
        (128, 4096, 1_500, 3_354.60),
        (2048, 128, 3_000, 742.17),
        (5000, 500, 1_500, 885.67),
        (500, 2000, 3_000, 4_462.98),
        (1000, 1000, 3_000, 3_958.45),
        (2048, 2048, 1_500, 2_551.21),
    ],
) + _rows(
    "mixtral-8x7b",
    2,
    8192,
    4096,
    [
        (128, 128, 30_000, 24_572.90),
        (128, 2048, 3_000, 20_938.80),
        (2048, 128, 3_000, 2_894.09),
        (5000, 500, 1_500, 3_630.24),
        (500, 2000, 3_000, 16_886.30),
        (1000, 1000, 3_000, 14_154.95),
        (2048, 2048, 1_500, 10_448.79),
        (20000, 2000, 1_000, 1_583.86),
    ],
)
# 2025 MoE (same page as ROWS_2025): "Llama 4 Maverick", H100 TP8 (FP8), `--ep` not published:
# replayed as attention data-parallel over 8 groups, experts split over them (tp 1, ep 8).
ROWS_MAVERICK = _rows(
    "llama-4-maverick",
    1,
    8192,
    2048,
    [
        (128, 2048, 3_000, 10_829),
        (128, 4096, 1_500, 6_744),
        (500, 2000, 3_000, 10_108),
        (1000, 1000, 3_000, 9_677),
        (1000, 2000, 1_500, 9_151),
        (2048, 2048, 1_500, 6_916),
        (5000, 500, 1_500, 3_457),
    ],
    ep=8,
)


def moe_rows(rows: Sequence[Row]) -> tuple[Row, ...]:
    """The MoE models' rows of a table."""
    return tuple(r for r in rows if r.model in ("mixtral-8x7b", "llama-4-maverick"))


MOE_FIT_ROWS = moe_rows(ROWS_V013)  # the one set the scale is fitted on
SCALE_GRID = np.linspace(0.4, 1.0, 25)


def kv_dtype_of(dtype: str) -> str:
    """The KV-cache dtype of a published run: FP8 for FP8 checkpoints (the H100 rows'
    basis, above) and for FP4 ones (assumed: the pages do not state the FP4 rows' KV
    dtype), else the weights' dtype (FP16 runs keep a 16-bit cache)."""
    return "fp8" if dtype in ("fp8", "fp4") else dtype


def replay_row(
    cat: Catalog, row: Row, chip: Chip | None = None, kv_free_fraction: float | None = None
) -> tuple[float, int]:
    """(simulated total output tokens/s, full ISL + OSL reservations the KV cache holds,
    capped by the max batch) of one row on its GPU (or `chip`), in its dtype; the KV cache
    by the catalog's rule, or by TensorRT-LLM's `kv_free_fraction` of free memory."""
    model = cat.model(row.model)
    assert isinstance(model, LLMModel)
    gpu = chip or cat.chip(row.gpu)
    kv_dtype = kv_dtype_of(row.dtype)
    limits = ReplicaLimits(row.max_tokens, row.max_seqs, 16, 1, False, "guaranteed_no_evict")
    off = llm_offline_replay(
        gpu,
        model,
        tp=row.tp,
        dtype=row.dtype,
        kv_dtype=kv_dtype,
        limits=limits,
        input_len=LengthDist(row.isl, 0.0, hi=row.isl),
        output_len=LengthDist(row.osl, 0.0, hi=row.osl),
        n_requests=row.requests,
        ep=row.ep,
        kv_free_fraction=kv_free_fraction,
    )
    it = llm_iteration_model(
        gpu,
        model,
        tp=row.tp,
        dtype=row.dtype,
        kv_dtype=kv_dtype,
        ep=row.ep,
        kv_free_fraction=kv_free_fraction,
    )
    kv = it.kv_tokens(kv_free_fraction)
    return off.output_tokens_per_s, min(row.max_seqs, kv // (row.isl + row.osl))


def with_expert_scale(chip: Chip, scale: float) -> Chip:
    """`chip` with its family's ``moe.expert_gemm_peak_scale`` set to `scale`."""
    p = dataclasses.replace(chip.op_params, moe_expert_peak_scale=scale)
    return dataclasses.replace(chip, op_params=p)


def ratios(cat: Catalog, rows: Sequence[Row], scale: float | None = None) -> np.ndarray:
    """Simulated / published throughput of `rows` (the catalog's scale unless given)."""
    h100 = cat.chip("h100")
    chip = h100 if scale is None else with_expert_scale(h100, scale)
    return np.array([replay_row(cat, r, chip)[0] / r.published for r in rows])


def mape(r: np.ndarray) -> float:
    return float(np.mean(np.abs(r - 1.0)))


@dataclass(frozen=True)
class MoEFit:
    scale: float
    fit_mape: float  # on MOE_FIT_ROWS with the fitted scale
    unscaled_mape: float  # on MOE_FIT_ROWS with scale 1 (the dense GEMM efficiency)


def fit_expert_scale(cat: Catalog, rows: Sequence[Row] = MOE_FIT_ROWS) -> MoEFit:
    """Fit ``moe.expert_gemm_peak_scale`` on `rows` (see the module docstring)."""
    memo: dict[float, float] = {}

    def loss(x: tuple[float, ...]) -> float:
        s = round(float(x[0]), 6)
        if s not in memo:
            memo[s] = mape(ratios(cat, rows, s))
        return memo[s]

    best = round(grid_min(loss, [SCALE_GRID])[0], 4)
    return MoEFit(best, mape(ratios(cat, rows, best)), loss((1.0,)))
