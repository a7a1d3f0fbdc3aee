"""`calibrate check`: the operator model's error against every row of a profiling directory.

Error of a row = |predicted / measured - 1|; MAPE = its mean. Reported per operator (the
attention kernel as ``attn_decode`` and ``attn_prefill``), per collective and fabric, per
model folder, for the GEMMs together, and overall (every row).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mtia_cluster.calibrate.attention import predict_attention_s
from mtia_cluster.calibrate.profiling import CollectiveRow, OpRow, Profile
from mtia_cluster.catalog.chip import Chip
from mtia_cluster.catalog.op_model import OpParams
from mtia_cluster.perf.layer import GEMM_OPS, op_times_s
from mtia_cluster.perf.ops import all_reduce_time_s, send_recv_time_s

PROFILE_DTYPE = "fp16"  # Vidur profiles FP16 weights
SIZE_WINDOW = (1 << 20, 1 << 28)  # 1 MiB .. 256 MiB: the all-reduce acceptance window


def predict_ops(rows: list[OpRow], chip: Chip, params: OpParams) -> np.ndarray:
    """Predicted seconds of each operator row (computed once per distinct shape)."""
    by_shape: dict[object, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_shape[r.shape].append(i)
    out = np.empty(len(rows))
    for shape, idx in by_shape.items():
        tokens = np.array([rows[i].tokens for i in idx], dtype=np.float64)
        times = op_times_s(rows[idx[0]].shape, tokens, chip, PROFILE_DTYPE, params)
        del shape
        for j, i in enumerate(idx):
            out[i] = times[rows[i].op][j]
    return out


def predict_collectives(rows: list[CollectiveRow], chip: Chip, params: OpParams) -> np.ndarray:
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        up = r.fabric == "scale_up"
        link = chip.scale_up_bytes_per_s if up else chip.scale_out_bytes_per_s
        if r.kind == "all_reduce":
            c = params.all_reduce_up if up else params.all_reduce_out
            out[i] = float(all_reduce_time_s(r.size_bytes, r.ranks, link, c))
        else:
            c = params.send_recv_up if up else params.send_recv_out
            out[i] = float(send_recv_time_s(r.size_bytes, link, c))
    return out


@dataclass(frozen=True)
class CheckReport:
    chip: str
    family: str
    rows: int
    skipped_rows: int
    mape: float
    per_op: dict[str, float]
    per_model: dict[str, float]
    rows_per_op: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {
            "chip": self.chip,
            "family": self.family,
            "rows": self.rows,
            "skipped_rows": self.skipped_rows,
            "mape": self.mape,
            "per_op": self.per_op,
            "per_model": self.per_model,
            "rows_per_op": self.rows_per_op,
        }


def _mapes(keys: list[str], err: np.ndarray) -> tuple[dict[str, float], dict[str, int]]:
    groups: dict[str, list[float]] = defaultdict(list)
    for k, e in zip(keys, err, strict=True):
        groups[k].append(float(e))
    return (
        {k: float(np.mean(v)) for k, v in sorted(groups.items())},
        {k: len(v) for k, v in sorted(groups.items())},
    )


def check_profile(prof: Profile, chip: Chip, params: OpParams | None = None) -> CheckReport:
    """Compare the model (the chip's family parameters unless `params`) with every row."""
    p = params or chip.op_params
    op_err = np.abs(predict_ops(prof.ops, chip, p) / np.array([r.time_s for r in prof.ops]) - 1)
    co_err = np.abs(
        predict_collectives(prof.collectives, chip, p)
        / np.array([r.time_s for r in prof.collectives])
        - 1
    )
    at = prof.attention
    at_err = np.abs(predict_attention_s(at, chip, p) / np.array([r.time_s for r in at]) - 1)
    keys = [r.op for r in prof.ops] + [f"{r.kind}.{r.fabric}" for r in prof.collectives]
    keys += ["attn_prefill" if r.prefill else "attn_decode" for r in at]
    err = np.concatenate([op_err, co_err, at_err])
    per_op, counts = _mapes(keys, err)
    gemm = [e for r, e in zip(prof.ops, op_err, strict=True) if r.op in GEMM_OPS]
    if gemm:
        per_op["gemm"] = float(np.mean(gemm))
        counts["gemm"] = len(gemm)
    lo, hi = SIZE_WINDOW
    for fabric in ("scale_up", "scale_out"):
        win = [
            e
            for r, e in zip(prof.collectives, co_err, strict=True)
            if r.kind == "all_reduce" and r.fabric == fabric and lo <= r.size_bytes <= hi
        ]
        if win:
            key = f"all_reduce.{fabric}[1MiB-256MiB]"
            per_op[key], counts[key] = float(np.mean(win)), len(win)
    per_model, _ = _mapes(
        [r.model for r in prof.ops] + [r.source for r in at], np.concatenate([op_err, at_err])
    )
    return CheckReport(
        chip=chip.name,
        family=p.family,
        rows=len(err),
        skipped_rows=prof.skipped_rows,
        mape=float(np.mean(err)) if len(err) else float("nan"),
        per_op=per_op,
        per_model=per_model,
        rows_per_op=counts,
    )
