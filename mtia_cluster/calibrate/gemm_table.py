"""Fit one dtype's GEMM efficiency to a published table of GEMM kernel throughputs.

The FP16 operator fit (:mod:`mtia_cluster.calibrate.fit`) has no FP8 rows, so the FP8
parameters of a family come from published FP8 kernel measurements instead, kept as small
cited tables under ``configs/catalog/gemm_measurements/`` (rows ``[groups, m per group, n,
k, tflops]``). Every row is predicted with the operator model itself (``gemm_time_s``, or
``grouped_gemm_time_s`` for grouped rows), with the family's bandwidth, p-norm and floor.

Procedure (deterministic, as ``calibrate fit``): ``peak_fraction`` and ``k_overhead`` (the
fixed per-output-tile cost in K elements, ``OpParams.gemm_k_overhead``) minimise the MAPE
over the table's *compute-bound* rows -- those whose FLOPs at the dtype's dense peak take
longer than their bytes at the chip's bandwidth; memory-bound rows depend on the
bandwidth-side parameters this fit does not touch -- on a fixed grid refined twice around
the best point (ties to the first). The MAPE over all rows is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydantic import Field

from mtia_cluster.calibrate.grid import grid_min
from mtia_cluster.catalog.chip import DTYPE_BYTES, Chip
from mtia_cluster.catalog.op_model import OpParams
from mtia_cluster.config import load_yaml
from mtia_cluster.config.models import Dtype
from mtia_cluster.config.schema import Strict, validate
from mtia_cluster.errors import UserError
from mtia_cluster.perf.ops import GemmEnv, gemm_bytes, gemm_time_s, grouped_gemm_time_s

PEAK_GRID = np.linspace(0.4, 1.0, 25)
K_OVERHEAD_GRID = np.linspace(0.0, 2048.0, 33)


class GemmTableFile(Strict):
    """A published table of GEMM throughputs (one file under gemm_measurements/)."""

    name: str = Field(min_length=1)
    source: str = Field(min_length=1)
    chip: str = Field(min_length=1)
    dtype: Dtype
    rows: list[list[float]] = Field(min_length=1)  # [groups, m per group, n, k, tflops]


@dataclass(frozen=True)
class GemmTable:
    name: str
    source: str
    chip: str
    dtype: str
    rows: np.ndarray  # [groups, m, n, k, tflops] per row

    @property
    def measured_s(self) -> np.ndarray:
        g, m, n, k, tf = self.rows.T
        return 2.0 * g * m * n * k / (tf * 1e12)


def read_gemm_table(path: Path) -> GemmTable:
    """The table at `path`, strictly validated (unknown keys, bad rows: one UserError)."""
    spec = validate(GemmTableFile, load_yaml(path), path)
    if any(len(r) != 5 for r in spec.rows):
        raise UserError("each row is [groups, m, n, k, tflops]", file=path, field="rows")
    rows = np.array(spec.rows, dtype=np.float64)
    if np.any(rows <= 0):
        raise UserError("every row entry must be positive", file=path, field="rows")
    return GemmTable(spec.name, spec.source, spec.chip, spec.dtype, rows)


def predict_s(table: GemmTable, chip: Chip, p: OpParams) -> np.ndarray:
    """Seconds of every row by the operator model with parameters `p`."""
    peak, bw = chip.gemm_peak(table.dtype), chip.offchip.bandwidth_bytes_per_s
    wb = DTYPE_BYTES[table.dtype]
    env = GemmEnv(peak, bw, chip.compute_units, p, wb)
    out = []
    for g, m, n, k, _ in table.rows:
        if g == 1:
            t = gemm_time_s(m, k, n, peak_flops=peak, bw_bytes_per_s=bw,
                            units=chip.compute_units, p=p, weight_bytes=wb)  # fmt: skip
        else:
            ones = np.ones((1, int(g)))
            t = grouped_gemm_time_s(ones, ones * m, k, n, env)
        out.append(float(np.asarray(t).reshape(-1)[0]))
    return np.array(out)


def compute_bound(table: GemmTable, chip: Chip) -> np.ndarray:
    """Rows whose FLOPs at the dense peak outlast their bytes at full bandwidth."""
    g, m, n, k, _ = table.rows.T
    flop_s = 2.0 * g * m * n * k / chip.gemm_peak(table.dtype)
    byte_s = g * gemm_bytes(m, k, n, DTYPE_BYTES[table.dtype]) / chip.offchip.bandwidth_bytes_per_s
    return flop_s > byte_s


@dataclass(frozen=True)
class DtypeFit:
    peak_fraction: float
    k_overhead: float
    rows: int
    fit_rows: int
    fit_mape: float
    all_mape: float
    before_fit_mape: float  # the family's own (FP16-fitted) parameters on the same rows
    before_all_mape: float


def _mape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / meas - 1.0)))


def fit_gemm_table(table: GemmTable, chip: Chip, base: OpParams | None = None) -> DtypeFit:
    """Fit (peak_fraction, k_overhead) of `table.dtype` for `chip`'s family (see module)."""
    p0 = base or chip.op_params
    meas = table.measured_s
    sel = compute_bound(table, chip)
    sub = replace(table, rows=table.rows[sel])

    def params(x: tuple[float, ...]) -> OpParams:
        return replace(p0, gemm_peak_fraction=x[0], gemm_k_overhead=x[1])

    def loss(x: tuple[float, ...]) -> float:
        return _mape(predict_s(sub, chip, params(x)), meas[sel])

    best = grid_min(loss, [PEAK_GRID, K_OVERHEAD_GRID])
    fitted = params(best)
    return DtypeFit(
        round(best[0], 4),
        round(best[1], 1),
        len(meas),
        int(sel.sum()),
        _mape(predict_s(sub, chip, fitted), meas[sel]),
        _mape(predict_s(table, chip, fitted), meas),
        _mape(predict_s(sub, chip, p0), meas[sel]),
        _mape(predict_s(table, chip, p0), meas),
    )
