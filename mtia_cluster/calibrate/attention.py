"""Attention kernels against Vidur's measured attention kernel times (``attention.csv``).

Vidur's profiler (microsoft/vidur ``data/profiling/compute/<gpu>/<org>/<model>/
attention.csv``; before May 2024 one ``data/profiling/<gpu>/attention.csv``) times one
layer's attention kernel on one GPU: decode rows (``is_prefill`` False) run ``batch_size``
sequences of ``kv_cache_size`` cached tokens each; prefill rows one ``prefill_chunk_size``
chunk after ``kv_cache_size`` cached tokens. Shapes are per model (``n_embd``, ``n_q_head``,
``n_kv_head``), split over ``num_tensor_parallel_workers``; KV is FP16; times are medians in
milliseconds.

The cost model's kernel (perf/llm.py, one layer, one GPU) is the roofline
``max(4 x q_dim / tp x pairs / (peak16 x prefill_fraction), floor + KV bytes / (BW x
decode_fraction))`` with KV bytes = sequences x cached tokens x 2 (K and V) x kv heads per
GPU (``n_kv_head / min(tp, n_kv_head)``) x head_dim x 2 bytes, and (query, key) pairs counted
as the engine counts them (engine/llm/scheduler.py): a decode sequence of context c has c + 1,
a chunk of n tokens after c cached ones n x c + n (n + 1) / 2. :func:`fit_attention` fits
(decode_fraction, floor) on the decode rows, then prefill_fraction on the prefill rows with
that decode side, by the procedure of ``calibrate fit`` (calibrate/grid.py: MAPE over a fixed
grid, then twice over finer grids around the best point; deterministic).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mtia_cluster.calibrate.grid import US, fit_two, grid_min, mape
from mtia_cluster.catalog.chip import Chip
from mtia_cluster.catalog.op_model import OpParams
from mtia_cluster.errors import UserError

MS = 1e-3
KV_BYTES = 2.0  # Vidur profiles FP16 KV
COLUMNS = (
    "n_embd",
    "n_q_head",
    "n_kv_head",
    "num_tensor_parallel_workers",
    "batch_size",
    "prefill_chunk_size",
    "kv_cache_size",
    "is_prefill",
)


@dataclass(frozen=True)
class AttnRow:
    """One measured attention kernel: one layer, one GPU."""

    source: str
    hidden: int
    heads: int
    kv_heads: int
    tp: int
    batch: int
    chunk: int
    context: int
    prefill: bool
    time_s: float

    @property
    def kv_bytes(self) -> float:
        """KV bytes one GPU reads for this kernel (decode: every cached token once)."""
        head_dim = self.hidden / self.heads
        per_gpu = self.kv_heads / min(self.tp, self.kv_heads)
        return self.batch * self.context * 2.0 * per_gpu * head_dim * KV_BYTES

    @property
    def pairs(self) -> float:
        """(query, key) pairs as the engine counts them (see the module docstring)."""
        if self.prefill:
            n = self.chunk
            return self.batch * (n * self.context + n * (n + 1) / 2.0)
        return self.batch * (self.context + 1.0)

    @property
    def flops(self) -> float:
        """Attention math of this kernel: 4 x q_dim per GPU per pair (QK^T and PV)."""
        return 4.0 * self.hidden / self.tp * self.pairs


def _int(row: dict[str, str], key: str, path: Path) -> int:
    try:
        return int(float(row[key]))
    except (KeyError, ValueError):
        raise UserError(f"{path}: {key}: bad or missing value {row.get(key)!r}") from None


def read_attention_csv(path: str | Path, source: str = "") -> list[AttnRow]:
    """Rows of one Vidur ``attention.csv`` (decode and prefill) with a median time."""
    p = Path(path)
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(line for line in f if not line.startswith("#"))
        rows = []
        for r in reader:
            prefill = r.get("is_prefill", "") == "True"
            col = f"time_stats.attn_{'prefill' if prefill else 'decode'}.median"
            if not r.get(col):
                continue
            h, nh, nkv, tp, b, chunk, ctx = (_int(r, k, p) for k in COLUMNS[:-1])
            t = float(r[col]) * MS
            rows.append(AttnRow(source or str(p), h, nh, nkv, tp, b, chunk, ctx, prefill, t))
    return rows


def decode_x_s(rows: list[AttnRow], chip: Chip) -> np.ndarray:
    """Per decode row, its KV bytes at the chip's full bandwidth (s)."""
    return np.array([r.kv_bytes for r in rows]) / chip.offchip.bandwidth_bytes_per_s


def predict_decode_s(
    rows: list[AttnRow], chip: Chip, fraction: float, floor_s: float
) -> np.ndarray:
    """The cost model's decode attention time of each row (one layer, one GPU)."""
    return floor_s + decode_x_s(rows, chip) / fraction


def predict_attention_s(rows: list[AttnRow], chip: Chip, p: OpParams) -> np.ndarray:
    """The cost model's time of each row's kernel under parameters `p` (one layer, one GPU):
    the roofline of its FLOP side and its KV-read side (floor included)."""
    flops = np.array([r.flops for r in rows])
    compute = flops / (chip.gemm_peak("fp16") * p.attn_prefill_peak_fraction)
    memory = predict_decode_s(rows, chip, p.attn_decode_bw_fraction, p.attn_floor_s)
    return np.maximum(compute, memory)


@dataclass(frozen=True)
class DecodeFit:
    fraction: float
    floor_us: float
    rows: int
    mape: float  # in-sample


def fit_decode(rows: list[AttnRow], chip: Chip) -> DecodeFit:
    """(decode_bw_fraction, decode_floor_us) minimising MAPE over `rows`' decode rows."""
    dec = [r for r in rows if not r.prefill]
    if not dec:
        raise UserError("no decode rows to fit attention on")
    meas = _times(dec)
    fraction, floor_us, mape = fit_two(decode_x_s(dec, chip), meas, additive=True, top_us=100.0)
    return DecodeFit(fraction, floor_us, len(dec), mape)


PREFILL_GRID = np.linspace(0.02, 1.0, 50)


@dataclass(frozen=True)
class AttentionFit:
    params: OpParams  # the input parameters with the three attention numbers replaced
    rows: dict[str, int]  # "attention.decode" / "attention.prefill"
    mape: dict[str, float]  # in-sample, of the full kernel (predict_attention_s)


def fit_attention(rows: list[AttnRow], chip: Chip, p: OpParams) -> AttentionFit:
    """Decode side (fraction, floor) on the decode rows, then the prefill fraction on the
    prefill rows given that decode side; a side without rows keeps its value."""
    out_rows: dict[str, int] = {}
    out_mape: dict[str, float] = {}
    dec = [r for r in rows if not r.prefill]
    if dec:
        d = fit_decode(dec, chip)
        p = replace(p, attn_decode_bw_fraction=d.fraction, attn_floor_s=d.floor_us * US)
        out_rows["attention.decode"] = len(dec)
        out_mape["attention.decode"] = mape(predict_attention_s(dec, chip, p), _times(dec))
    pre = [r for r in rows if r.prefill]
    if pre:
        meas = _times(pre)

        def loss(pt: tuple[float, ...]) -> float:
            q = replace(p, attn_prefill_peak_fraction=pt[0])
            return mape(predict_attention_s(pre, chip, q), meas)

        p = replace(p, attn_prefill_peak_fraction=grid_min(loss, [PREFILL_GRID])[0])
        out_rows["attention.prefill"] = len(pre)
        out_mape["attention.prefill"] = mape(predict_attention_s(pre, chip, p), meas)
    return AttentionFit(p, out_rows, out_mape)


def _times(rows: list[AttnRow]) -> np.ndarray:
    return np.array([r.time_s for r in rows])
