"""Decode attention against Vidur's measured attention kernel times (``attention.csv``).

Vidur's profiler (microsoft/vidur ``data/profiling/compute/<gpu>/<org>/<model>/
attention.csv``) times one layer's attention kernel on one GPU: decode rows (``is_prefill``
False) run ``batch_size`` sequences of ``kv_cache_size`` cached tokens each; prefill rows
one ``prefill_chunk_size`` chunk after ``kv_cache_size`` cached tokens. Shapes are per model
(``n_embd``, ``n_q_head``, ``n_kv_head``), split over ``num_tensor_parallel_workers``; KV is
FP16; times are medians in milliseconds.

The cost model's decode side of one layer's kernel (perf/llm.py) is
``floor + KV bytes / (BW x fraction)`` with KV bytes = batch x context x 2 (K and V) x
kv heads per GPU (``n_kv_head / min(tp, n_kv_head)``) x head_dim x 2 bytes.
:func:`fit_decode` fits (fraction, floor) to the decode rows by the procedure of
``calibrate fit`` (MAPE over a fixed grid, then twice over finer grids around the best point;
deterministic, ties to the first point).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtia_cluster.calibrate.fit import fit_two
from mtia_cluster.catalog.chip import Chip
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
    meas = np.array([r.time_s for r in dec])
    fraction, floor_us, mape = fit_two(decode_x_s(dec, chip), meas, additive=True, top_us=100.0)
    return DecodeFit(fraction, floor_us, len(dec), mape)
