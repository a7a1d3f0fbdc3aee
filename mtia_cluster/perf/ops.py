"""Operator-level kernel times: GEMMs, elementwise kernels, attention, collectives.

Each function is pure and vectorized over its token-count argument. The parameters are one
:class:`OpParams` per architecture family (``configs/catalog/op_models/<family>.yaml``):
dimensionless fractions of a chip's peaks plus kernel floors, so one fit (A100) carries to
another chip of the family (H100) through that chip's own peaks, bandwidth and unit count.

* **GEMM** ``(m x k) @ (k x n)``: compute time is wave-quantized over the chip's compute
  units: for each candidate output tile (``TILES``) the kernel runs ``ceil(tiles / units)``
  waves, each as long as one full tile at ``peak_fraction`` of the per-unit peak over
  ``k + k_overhead`` (a fixed per-tile cost -- pipeline fill, epilogue -- that a faster
  dtype does not shrink; 0 where the fit absorbs it, see ``OpParams.for_dtype``); the
  fastest tile wins (what cuBLAS's heuristics approximate). Memory time is the operands and
  result at ``bw_fraction`` of off-chip bandwidth. The two combine by a p-norm
  ``(tc^p + tm^p)^(1/p)`` (p = ``overlap_p``; p -> inf is the roofline max, smaller p charges
  the ridge-point region where neither side hides the other), plus a launch ``floor_s``.
* **Grouped GEMM** (MoE experts, one kernel for all experts of a group, as vLLM's fused MoE
  and TensorRT-LLM's grouped GEMM run them): the experts' output tiles share the waves
  (``ceil(sum of expected tiles / units)``), their operand bytes add up, one p-norm and one
  launch floor for the whole kernel.
* **Elementwise** kernels (norms, rotary, activation, residual add, embedding gather, KV-cache
  write, sampling): bytes moved at a per-kind fraction of bandwidth, never below a per-kind
  floor.
* **Attention** (its own kernel; see :mod:`mtia_cluster.perf.llm` for the overlap rule):
  prefill FLOPs at ``attn_prefill_peak_fraction`` of peak; decode KV reads at
  ``attn_decode_bw_fraction`` of bandwidth after a fixed ``attn_floor_s`` per layer.
* **Collectives**: latency + algorithm bytes / (link bandwidth x fraction), ring all-reduce
  moving ``2 (n - 1) / n`` of the message, send/recv moving it once; scale-up and scale-out
  have their own latency and fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog.op_model import Collective, OpParams

# Output tiles (rows x cols) a GEMM library chooses among: CUTLASS/cuBLAS threadblock shapes
# for FP16 tensor-core GEMMs (https://github.com/NVIDIA/cutlass, default tile configurations).
TILES: tuple[tuple[int, int], ...] = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 64))
ACT_BYTES = 2.0  # activations stay 16-bit between kernels (FP8 models quantize GEMM inputs)


def gemm_time_s(
    m: np.ndarray | float,
    k: float,
    n: float,
    *,
    peak_flops: float,
    bw_bytes_per_s: float,
    units: int | None,
    p: OpParams,
    weight_bytes: float = 2.0,
) -> np.ndarray:
    """Seconds of ``m x k @ k x n`` (weights ``k x n`` at `weight_bytes` per element).

    ``m`` may be an array (tokens) and may be fractional (MoE tokens per expert): tiles use
    its ceiling. ``m == 0`` costs nothing (no kernel is launched).
    """
    m = np.asarray(m, dtype=np.float64)
    mi = np.ceil(m)
    tc = gemm_compute_s(mi, k + p.gemm_k_overhead, n, peak_flops, units, p.gemm_peak_fraction)
    tm = gemm_bytes(m, k, n, weight_bytes) / (bw_bytes_per_s * p.gemm_bw_fraction)
    return combine_gemm(m, tc, tm, p.gemm_overlap_p, p.gemm_floor_s)


def gemm_bytes(m: np.ndarray, k: float, n: float, weight_bytes: float) -> np.ndarray:
    """Off-chip bytes of a GEMM: input and weights at the GEMM dtype, 16-bit output."""
    return (m * k + k * n) * weight_bytes + m * n * ACT_BYTES


def combine_gemm(
    m: np.ndarray, tc: np.ndarray, tm: np.ndarray, p: float, floor_s: float
) -> np.ndarray:
    """p-norm of compute and memory time plus the launch floor (no kernel when m == 0)."""
    t = (tc**p + tm**p) ** (1.0 / p) + floor_s
    return np.where(m > 0, t, 0.0)


def gemm_compute_s(
    m: np.ndarray, k: float, n: float, peak: float, units: int | None, frac: float
) -> np.ndarray:
    """Wave-quantized compute time (continuous when the unit count is not published)."""
    if not units:
        return 2.0 * m * k * n / (peak * frac)
    per_unit = peak * frac / units
    best = np.full(m.shape, np.inf)
    for tm, tn in TILES:
        tiles = np.ceil(m / tm) * np.ceil(n / tn)
        waves = np.ceil(tiles / units)
        best = np.minimum(best, waves * 2.0 * tm * tn * k / per_unit)
    return best


@dataclass(frozen=True)
class GemmEnv:
    """What a GEMM's time depends on besides its shape: the chip and the family params."""

    peak_flops: float
    bw_bytes_per_s: float
    units: int | None
    p: OpParams
    weight_bytes: float = 2.0


def grouped_gemm_time_s(hit: np.ndarray, m: np.ndarray, k: float, n: float, env: GemmEnv):
    """Seconds of one grouped GEMM over experts ``[..., e]``: expert e runs with probability
    ``hit[..., e]`` on ``m[..., e]`` tokens (``m x k @ k x n`` each); vectorized over the
    leading axes (the result has the experts axis summed out)."""
    p = env.p
    mi = np.ceil(m)
    bytes_ = (hit * gemm_bytes(m, k, n, env.weight_bytes)).sum(axis=-1)
    tm_s = bytes_ / (env.bw_bytes_per_s * p.gemm_bw_fraction)
    flops = (hit * 2.0 * m * k * n).sum(axis=-1)
    ke = k + p.gemm_k_overhead  # K of one tile's time, with the fixed per-tile cost
    if env.units:
        per_unit = env.peak_flops * p.gemm_peak_fraction / env.units
        tc = np.full(tm_s.shape, np.inf)
        for tr, tcol in TILES:
            tiles = (hit * np.ceil(mi / tr) * np.ceil(n / tcol)).sum(axis=-1)
            tc = np.minimum(tc, np.ceil(tiles / env.units) * 2.0 * tr * tcol * ke / per_unit)
    else:
        tc = flops * (ke / k) / (env.peak_flops * p.gemm_peak_fraction)
    return combine_gemm(flops, tc, tm_s, p.gemm_overlap_p, p.gemm_floor_s)


def elementwise_time_s(
    bytes_: np.ndarray | float, kind: str, bw_bytes_per_s: float, p: OpParams
) -> np.ndarray:
    """Seconds of a memory-bound kernel moving `bytes_` (zero bytes: no kernel)."""
    e = p.elementwise[kind]
    b = np.asarray(bytes_, dtype=np.float64)
    return np.where(b > 0, np.maximum(e.floor_s, b / (bw_bytes_per_s * e.bw_fraction)), 0.0)


def all_reduce_time_s(
    size_bytes: np.ndarray | float, n: int, link_bytes_per_s: float, c: Collective
) -> np.ndarray:
    """Ring all-reduce of `size_bytes` over `n` ranks (bus bytes 2 (n-1)/n x size)."""
    s = np.asarray(size_bytes, dtype=np.float64)
    if n <= 1:
        return np.zeros_like(s)
    t = c.latency_s + 2.0 * (n - 1) / n * s / (link_bytes_per_s * c.bw_fraction)
    return np.where(s > 0, t, 0.0)


def send_recv_time_s(
    size_bytes: np.ndarray | float, link_bytes_per_s: float, c: Collective
) -> np.ndarray:
    """Point-to-point transfer of `size_bytes`."""
    s = np.asarray(size_bytes, dtype=np.float64)
    return np.where(s > 0, c.latency_s + s / (link_bytes_per_s * c.bw_fraction), 0.0)
