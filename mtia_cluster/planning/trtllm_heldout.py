"""Held-out GPUs: TensorRT-LLM perf-overview rows on GPUs the cost model was never fitted on.

Not checks and not fitted on: every number here is only replayed and compared (issue #12,
"right on hardware we never fitted"). Rows of the same NVIDIA/TensorRT-LLM
``docs/source/performance/perf-overview.md`` pages whose H100 FP8 rows
``planning/trtllm_overview.py`` already replays, on the other GPUs of the catalog:

* v0.13.0 (October 2024, TensorRT engine; ``V013_URL``): the one table whose columns are
  H200 141GB HBM3 FP8, GH200 120GB FP8, H100 80GB HBM3 FP8, H100 80GB HBM3 FP16,
  A100-SXM4-80GB FP16 and L40S FP8, the same ``trtllm-bench`` run for each. Replayed: the
  Llama-2-70B (TP 1, 2, 4, 8) and Llama 3.1 8B (TP 1) rows of the four columns on catalog
  chips (h200, h100 FP8, h100 FP16, a100 FP16); GH200 and L40S are not in the catalog (the
  page does not say which GH200 memory part "120GB" is). Same runtime limits as
  ``ROWS_V013`` (the page's printed example: 8,192 tokens, 4,096 sequences).
* v0.17 (early 2025, TensorRT engine; ``V017_URL``): "LLaMA v3.1 8B" (TP 1) and "LLaMA v3.1
  70B" (TP 1, 2, 4, 8) rows of the H200 FP8, H100 FP8 and A100 FP16 columns (GH200 and L40S
  left out); limits as v0.13.0 (the page prints the same example run), KV 0.95 of free
  memory ("In majority of cases").
* 2025, PyTorch backend (@ 00f37686aa854010d68bcbd0f4ab000221541ca6, ``ROWS_2025``'s page):
  "Llama 3.3 70B" H200 TP1 (FP8); "Llama 3.1 8B" H200 TP1 and H100 TP1 (FP8); "Llama 3.1
  405B" H200 TP8 and H100 TP8 (FP8); "Llama 3.3 70B" B200 TP1 and GB200 TP1 (FP4). Same
  limits as ``ROWS_2025`` (8,192 tokens, 2,048 sequences).

FP8 rows store an FP8 KV cache, FP4 rows too (assumed), FP16 rows an FP16 one
(``kv_dtype_of``). Requests
per ISL/OSL are the pages' ``$num_requests`` table (``REQUESTS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.errors import UserError
from mtia_cluster.planning.trtllm_overview import Row, mape, replay_row

V017_URL = (
    "https://github.com/NVIDIA/TensorRT-LLM/blob/v0.17.0/docs/source/performance/perf-overview.md"
)
PAGE_2025 = (
    "https://github.com/NVIDIA/TensorRT-LLM/blob/00f37686aa854010d68bcbd0f4ab000221541ca6/"
    "docs/source/performance/perf-overview.md"
)
# $num_requests per (ISL, OSL), as both pages print it
REQUESTS = {
    (128, 128): 30_000,
    (128, 2048): 3_000,
    (128, 4096): 1_500,
    (1000, 2000): 1_500,
    (2048, 128): 3_000,
    (2048, 2048): 1_500,
    (5000, 500): 1_500,
    (1000, 1000): 3_000,
    (500, 2000): 3_000,
    (20000, 2000): 1_000,
}
V013_LIMITS = (8192, 4096)  # max tokens per step, max sequences (ROWS_V013's)
LIMITS_2025 = (8192, 2048)  # (ROWS_2025's)
# v0.13.0 columns on catalog chips: (gpu, dtype) in the page's order H200 FP8, H100 FP8,
# H100 FP16, A100 FP16 (GH200 and L40S left out)
V013_COLUMNS = (("h200", "fp8"), ("h100", "fp8"), ("h100", "fp16"), ("a100", "fp16"))
Cell = float | None
K = TypeVar("K")
# v0.13.0 "LLaMA v2 70B": (ISL, OSL, TP) -> the four columns above (None = blank)
V013_LLAMA2_70B: dict[tuple[int, int, int], tuple[Cell, Cell, Cell, Cell]] = {
    (128, 128, 1): (3_969.25, 3_413.82, None, None),
    (128, 128, 2): (6_394.64, 6_432.82, 3_170.28, 1_336.48),
    (128, 128, 4): (11_031.42, 10_865.42, 6_420.88, 2_766.00),
    (128, 128, 8): (17_060.04, 16_384.83, 11_146.15, 4_742.74),
    (128, 2048, 1): (3_742.99, None, None, None),
    (128, 2048, 2): (6_453.25, 5_775.34, 757.21, 476.46),
    (128, 2048, 4): (13_869.67, 9_536.82, 5_274.27, 2_686.16),
    (128, 2048, 8): (19_220.48, 17_715.01, 8_904.94, 5_520.41),
    (128, 4096, 1): (2_459.63, 446.60, None, None),
    (128, 4096, 2): (4_831.03, 3_354.60, 385.98, 235.22),
    (128, 4096, 4): (8_988.84, 7_619.62, 3_228.36, 1_941.07),
    (128, 4096, 8): (15_115.41, 12_506.95, 5_996.81, 3_539.36),
    (2048, 128, 1): (458.88, 328.90, None, None),
    (2048, 128, 2): (745.71, 742.17, 308.02, 138.81),
    (2048, 128, 4): (1_297.10, 1_270.78, 755.30, 321.72),
    (2048, 128, 8): (2_060.53, 2_009.57, 1_348.71, 561.71),
    (5000, 500, 1): (548.46, 224.17, None, None),
    (5000, 500, 2): (1_020.86, 885.67, 212.20, 112.43),
    (5000, 500, 4): (1_759.69, 1_590.94, 837.57, 386.78),
    (5000, 500, 8): (2_839.69, 2_546.12, 1_570.91, 709.66),
    (500, 2000, 1): (3_019.28, 716.54, None, None),
    (500, 2000, 2): (6_402.94, 4_462.98, 629.21, 387.61),
    (500, 2000, 4): (12_429.18, 8_753.09, 4_012.41, 2_158.17),
    (500, 2000, 8): (16_789.12, 15_260.29, 7_384.79, 4_104.80),
    (1000, 1000, 1): (2_706.04, None, None, None),
    (1000, 1000, 2): (4_693.24, 3_958.45, 736.68, 425.70),
    (1000, 1000, 4): (8_557.11, 6_817.41, 3_866.05, 1_876.40),
    (1000, 1000, 8): (13_483.04, 11_511.74, 6_543.96, 3_285.82),
    (2048, 2048, 1): (1_911.20, 412.37, None, None),
    (2048, 2048, 2): (3_408.82, 2_551.21, 388.82, 226.60),
    (2048, 2048, 4): (6_702.46, 5_212.02, 2_512.22, 1_316.92),
    (2048, 2048, 8): (10_348.65, 8_016.14, 4_414.75, 2_492.09),
}
# v0.13.0 "LLaMA v3.1 8B", TP 1: (ISL, OSL) -> the four columns
V013_LLAMA31_8B: dict[tuple[int, int], tuple[Cell, Cell, Cell, Cell]] = {
    (128, 128): (28_125.59, 27_147.22, 15_647.83, 6_687.04),
    (128, 2048): (22_989.20, 19_221.02, 8_882.95, 4_918.53),
    (128, 4096): (16_077.62, 11_856.11, 5_462.96, 3_054.46),
    (2048, 128): (3_625.83, 3_497.30, 1_859.37, 796.17),
    (5000, 500): (3_823.76, 3_276.69, 1_687.74, 788.66),
    (500, 2000): (19_382.37, 13_996.05, 6_834.76, 3_929.83),
    (1000, 1000): (16_435.21, 13_411.43, 7_160.92, 3_592.16),
    (2048, 2048): (11_072.97, 8_851.23, 4_152.21, 2_269.78),
    (20000, 2000): (1_634.98, 1_278.04, 595.89, 316.43),
}
ISL_OSL_2025 = (
    (128, 128),
    (128, 2048),
    (128, 4096),
    (500, 2000),
    (1000, 1000),
    (1000, 2000),
    (2048, 128),
    (2048, 2048),
    (5000, 500),
    (20000, 2000),
)
# 2025 page: (title, model, gpu, dtype, tp) -> published, in ISL_OSL_2025's order
COLUMNS_2025: tuple[tuple[str, str, str, str, int, tuple[Cell, ...]], ...] = (
    ("Llama 3.3 70B", "llama-3.1-70b", "h200", "fp8", 1,
     (3_803, 4_336, 2_872, 3_666, 2_909, 2_994, 442, 2_003, 566, 283)),
    ("Llama 3.1 8B", "llama-3.1-8b", "h200", "fp8", 1,
     (27_911, 26_221, 18_027, 20_770, 17_744, 16_828, 3_538, 12_194, 3_902, 1_804)),
    ("Llama 3.1 8B", "llama-3.1-8b", "h100", "fp8", 1,
     (28_312, 22_714, 14_325, 17_660, 15_220, 13_899, 3_450, 9_305, 3_459, 1_351)),
    ("Llama 3.1 405B", "llama-3.1-405b", "h200", "fp8", 8,
     (3_814, 5_348, 4_741, 4_724, 3_330, 3_722, 456, 2_948, 650, 505)),
    ("Llama 3.1 405B", "llama-3.1-405b", "h100", "fp8", 8,
     (3_627, 4_340, 3_116, 3_994, 2_919, 2_895, 453, 2_296, 610, 345)),
    ("Llama 3.3 70B", "llama-3.1-70b", "b200", "fp4", 1,
     (11_147, 9_922, 6_831, 7_762, 7_007, 6_271, 1_339, 4_783, 1_459, 665)),
    ("Llama 3.3 70B", "llama-3.1-70b", "gb200", "fp4", 1,
     (12_189, 11_309, 7_849, 9_028, 7_326, 6_513, 1_450, 5_646, 1_602, 755)),
)  # fmt: skip


# v0.17 (early 2025, TensorRT engine): "LLaMA v3.1 8B" and "LLaMA v3.1 70B" rows of the
# H200 FP8, H100 FP8 and A100 FP16 columns (GH200 and L40S left out), in this order
ISL_OSL_V017 = (
    (128, 128),
    (128, 2048),
    (128, 4096),
    (500, 2000),
    (1000, 1000),
    (2048, 128),
    (2048, 2048),
    (5000, 500),
    (20000, 2000),
)
COLUMNS_V017: tuple[tuple[str, str, str, str, int, tuple[Cell, ...]], ...] = (
    ("Llama 3.1 8B", "llama-3.1-8b", "h200", "fp8", 1,
     (29526.04, 25398.86, 17370.8, 21020.81, 17537.96, 3794.14, 11968.5, 3987.79, 1804.1)),
    ("Llama 3.1 8B", "llama-3.1-8b", "h100", "fp8", 1,
     (28836.77, 21109.38, 13593.65, 16500.69, 15244.78, 3556.73, 9488.42, 3559.36, 1401.31)),
    ("Llama 3.1 8B", "llama-3.1-8b", "a100", "fp16", 1,
     (6627.27, 5255.99, 3453.79, 4276.58, 3786.83, 799.61, 2424.16, 825.13, 330.04)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h200", "fp8", 1,
     (4020.75, 4165.68, 2651.75, 3018.39, 2823.45, 465.99, 1913.8, 560.16, 279.52)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h100", "fp8", 1,
     (3378.03, 911.62, 426.32, 775.57, 839.97, 343.29, None, 245.34, None)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h200", "fp8", 2,
     (6823.01, 8290.35, 6526.67, 6848.02, 5164.76, 809, 4183.88, 1025.38, 640.62)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h100", "fp8", 2,
     (6645.12, 6169.58, 3897.06, 4972.57, 4390.53, 772.66, 2898.16, 919.73, 443.01)),
    ("Llama 3.1 70B", "llama-3.1-70b", "a100", "fp16", 2,
     (1313.96, 531.26, None, 439.41, 472.94, 148.96, 261.1, 121.47, None)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h200", "fp8", 4,
     (11098.63, 14156, 10574.06, 12452.79, 8911.29, 1358.06, 7130.44, 1811.55, 1199.68)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h100", "fp8", 4,
     (11127.53, 11511.93, 7439.41, 9836.7, 7430.99, 1302.6, 5480.03, 1602.78, 920.19)),
    ("Llama 3.1 70B", "llama-3.1-70b", "a100", "fp16", 4,
     (2733.48, 2811.27, 1976.49, 2275.79, 1921.77, 325.15, 1393.64, 392.62, 212.08)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h200", "fp8", 8,
     (15355.84, 21195.88, 16941.52, 17278.4, 13181.24, 1983.03, 11142.47, 2717.83, 1920.45)),
    ("Llama 3.1 70B", "llama-3.1-70b", "h100", "fp8", 8,
     (14730.69, 17061.82, 14171.43, 14679.33, 11451.16, 1923.41, 8801.95, 2457.42, 1512.6)),
    ("Llama 3.1 70B", "llama-3.1-70b", "a100", "fp16", 8,
     (4717.62, 5241.5, 3724.67, 4445.37, 3320.41, 542.38, 2553.71, 696.34, 413.38)),
)  # fmt: skip
V017_LIMITS = V013_LIMITS  # the page prints the same example run (8,192 tokens, 4,096 seqs)


# TensorRT-LLM's kv_cache_free_gpu_mem_fraction per page: v0.13.0's printed example run
# (and v0.11.0's published command) 0.99; the 2025 page "in many cases" 0.95
KV_FREE_V013 = 0.99
KV_FREE_2025 = 0.95
KV_FREE_V017 = 0.95  # "In majority of cases, we also use ... 0.95"


@dataclass(frozen=True)
class HeldSet:
    """One held-out set: its title (page, model, GPU, TP, dtype), its rows and its page's
    KV-cache fraction of free memory."""

    title: str
    rows: tuple[Row, ...]
    kv_free_fraction: float


def _row(
    model: str, gpu: str, dtype: str, tp: int, isl: int, osl: int, pub: float, lim: tuple[int, int]
) -> Row:
    return Row(model, tp, isl, osl, REQUESTS[(isl, osl)], pub, lim[0], lim[1], 1, gpu, dtype)


def _column(table: Mapping[K, tuple[Cell, ...]], col: int) -> list[tuple[K, float]]:
    """(key, published) of one page column, blanks left out."""
    return [(k, v) for k, cells in table.items() if (v := cells[col]) is not None]


def v013_sets() -> tuple[HeldSet, ...]:
    """The v0.13.0 sets, one per (model, GPU, dtype, TP) with at least one published row."""
    sets = []
    for col, (gpu, dtype) in enumerate(V013_COLUMNS):
        for tp in (1, 2, 4, 8):
            rows = tuple(
                _row("llama-2-70b", gpu, dtype, tp, i, o, pub, V013_LIMITS)
                for (i, o, t), pub in _column(V013_LLAMA2_70B, col)
                if t == tp
            )
            if rows:
                title = f"v0.13.0 Llama-2-70B {gpu} {dtype} TP{tp}"
                sets.append(HeldSet(title, rows, KV_FREE_V013))
        rows = tuple(
            _row("llama-3.1-8b", gpu, dtype, 1, i, o, pub, V013_LIMITS)
            for (i, o), pub in _column(V013_LLAMA31_8B, col)
        )
        sets.append(HeldSet(f"v0.13.0 Llama-3.1-8B {gpu} {dtype} TP1", rows, KV_FREE_V013))
    return tuple(sets)


def _listed_sets(
    page: str,
    columns: tuple[tuple[str, str, str, str, int, tuple[Cell, ...]], ...],
    isl_osl: tuple[tuple[int, int], ...],
    lim: tuple[int, int],
    kv_free: float,
) -> tuple[HeldSet, ...]:
    """One set per listed (title, model, gpu, dtype, tp, published by `isl_osl`)."""
    out = []
    for title, model, gpu, dtype, tp, pubs in columns:
        rows = tuple(
            _row(model, gpu, dtype, tp, i, o, pub, lim)
            for (i, o), pub in zip(isl_osl, pubs, strict=True)
            if pub is not None
        )
        out.append(HeldSet(f"{page} {title} {gpu} {dtype} TP{tp}", rows, kv_free))
    return tuple(out)


def sets_2025() -> tuple[HeldSet, ...]:
    """The 2025 page's sets on GPUs other than H100 TP2, and their H100 counterparts."""
    return _listed_sets("2025", COLUMNS_2025, ISL_OSL_2025, LIMITS_2025, KV_FREE_2025)


def v017_sets() -> tuple[HeldSet, ...]:
    """The v0.17 page's Llama 3.1 8B / 70B sets on H200, H100 and A100."""
    return _listed_sets("v0.17", COLUMNS_V017, ISL_OSL_V017, V017_LIMITS, KV_FREE_V017)


def heldout_sets() -> tuple[HeldSet, ...]:
    return v013_sets() + v017_sets() + sets_2025()


def replay_or_nan(cat: Catalog, row: Row, kv_free: float | None = None) -> tuple[float, int]:
    """`replay_row`, or (nan, 0) when the catalog's memory rule does not fit the weights
    (a row the cost model cannot run at all: reported, not skipped)."""
    try:
        return replay_row(cat, row, kv_free_fraction=kv_free)
    except UserError:
        return float("nan"), 0


def set_mape(ratios: Sequence[float]) -> tuple[float, float, int]:
    """(MAPE, mean sim/pub, rows run) over the rows the model could run."""
    r = np.array([x for x in ratios if np.isfinite(x)])
    if not len(r):
        return float("nan"), float("nan"), 0
    return mape(r), float(r.mean()), len(r)


@dataclass(frozen=True)
class Replayed:
    """One held-out row replayed under both KV rules: (tokens/s, full reservations held)."""

    page: str  # "v0.13.0" or "2025"
    row: Row
    catalog: tuple[float, int]  # the catalog's (vLLM's) KV rule
    trtllm: tuple[float, int]  # the page's kv_cache_free_gpu_mem_fraction of free memory


def replay_set(cat: Catalog, s: HeldSet) -> tuple[Replayed, ...]:
    """Every row of `s` under both KV rules."""
    page = s.title.split()[0]
    return tuple(
        Replayed(page, r, replay_or_nan(cat, r), replay_or_nan(cat, r, s.kv_free_fraction))
        for r in s.rows
    )


@dataclass(frozen=True)
class RankPair:
    """The same published row (page, model, TP, dtype, ISL/OSL) on two GPUs."""

    key: tuple[str, str, int, str, int, int]
    published: float  # GPU a / GPU b, published
    simulated: float  # GPU a / GPU b, simulated (TensorRT-LLM KV rule)


def rank_pairs(done: Sequence[Replayed], a: str, b: str) -> tuple[RankPair, ...]:
    """Rows published for both GPU `a` and GPU `b` (same page, model, TP, dtype, lengths)."""

    def key(x: Replayed) -> tuple[str, str, int, str, int, int]:
        r = x.row
        return (x.page, r.model, r.tp, r.dtype, r.isl, r.osl)

    on_b = {key(x): x for x in done if x.row.gpu == b}
    out = []
    for x in done:
        y = on_b.get(key(x)) if x.row.gpu == a else None
        if y is not None and np.isfinite(x.trtllm[0]) and np.isfinite(y.trtllm[0]):
            pub = x.row.published / y.row.published
            out.append(RankPair(key(x), pub, x.trtllm[0] / y.trtllm[0]))
    return tuple(out)
