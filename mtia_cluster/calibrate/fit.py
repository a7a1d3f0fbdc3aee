"""`calibrate fit`: fit a family's operator parameters to measured rows, deterministically.

Procedure (no randomness, no iteration-order dependence; the same rows give the same numbers):

* Every group of parameters is fitted separately, on the rows it predicts, by minimising
  the mean absolute percentage error (MAPE) over a fixed grid, then over a finer grid
  centred on the best coarse point (``grid_min``); ties go to the first grid point.
* GEMMs (all four projections together): ``peak_fraction``, ``bw_fraction``, ``overlap_p``,
  ``floor_us``. The wave-quantized FLOP time and the byte time at fraction 1 are computed
  once per row, so the search only rescales them.
* Each elementwise kind (emb, norm, rope, act, add): ``bw_fraction`` and ``floor_us``.
* Each collective and fabric present (all_reduce / send_recv x scale_up / scale_out; ``part``
  "collectives" or "all"): ``latency_us`` and ``bw_fraction``; absent ones keep their values.
  Written to the chip's ``interconnect`` entry (and the family default on an "all" fit).
* Attention (``part`` "attention" or "all", from the ``attention.csv`` rows):
  ``attention.decode_bw_fraction`` and ``decode_floor_us`` on the decode rows, then
  ``prefill_peak_fraction`` on the prefill rows (:func:`mtia_cluster.calibrate.attention.
  fit_attention`). Nothing else is touched.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from mtia_cluster.calibrate.attention import fit_attention
from mtia_cluster.calibrate.grid import US, fit_two, grid_min
from mtia_cluster.calibrate.grid import mape as _mape
from mtia_cluster.calibrate.profiling import Profile
from mtia_cluster.catalog.chip import DTYPE_BYTES, Chip
from mtia_cluster.catalog.op_model import ELEMENTWISE_KINDS, Collective, Elementwise, OpParams
from mtia_cluster.perf.layer import ELEMENTWISE_OPS, GEMM_OPS
from mtia_cluster.perf.ops import gemm_bytes, gemm_compute_s


@dataclass(frozen=True)
class FitResult:
    params: OpParams
    rows: dict[str, int]  # rows used per parameter group
    mape: dict[str, float]  # in-sample MAPE per group


def _fit_gemm(prof: Profile, chip: Chip) -> tuple[tuple[float, ...], int, float]:
    rows = [r for r in prof.ops if r.op in GEMM_OPS]
    if not rows:
        return (), 0, float("nan")
    peak, bw = chip.gemm_peak("fp16"), chip.offchip.bandwidth_bytes_per_s
    tc1, tm1 = np.empty(len(rows)), np.empty(len(rows))
    for i, r in enumerate(rows):
        k, n = r.shape.gemms()[r.op]
        m = np.array([float(r.tokens)])
        tc1[i] = gemm_compute_s(m, k, n, peak, chip.compute_units, 1.0)[0]
        tm1[i] = gemm_bytes(m, k, n, DTYPE_BYTES["fp16"])[0] / bw
    meas = np.array([r.time_s for r in rows])

    def loss(pt: tuple[float, ...]) -> float:
        pf, bf, q, floor = pt
        pred = ((tc1 / pf) ** q + (tm1 / bf) ** q) ** (1.0 / q) + floor * US
        return _mape(pred, meas)

    axes = [
        np.linspace(0.40, 1.0, 13),
        np.linspace(0.40, 1.0, 13),
        np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]),
        np.linspace(0.0, 20.0, 11),
    ]
    best = grid_min(loss, axes)
    return best, len(rows), loss(best)


def fit_profile(prof: Profile, chip: Chip, part: str = "all") -> FitResult:
    """Fit the family parameters of `chip` to `prof` (see module docstring).

    `part`: "ops" (GEMM and elementwise), "collectives", "attention", or "all".
    """
    p = chip.op_params
    rows: dict[str, int] = {}
    mape: dict[str, float] = {}
    if part in ("all", "ops"):
        p = _fit_ops(prof, chip, p, rows, mape)
    if part in ("all", "collectives"):
        p = _fit_collectives(prof, chip, p, rows, mape)
    if part in ("all", "attention") and prof.attention:
        att = fit_attention(prof.attention, chip, p)
        p = att.params
        rows.update(att.rows)
        mape.update(att.mape)
    return FitResult(p, rows, mape)


def _fit_ops(
    prof: Profile, chip: Chip, p: OpParams, rows: dict[str, int], mape: dict[str, float]
) -> OpParams:
    g, n, err = _fit_gemm(prof, chip)
    if g:
        p = replace(
            p,
            gemm_peak_fraction=g[0],
            gemm_bw_fraction=g[1],
            gemm_overlap_p=g[2],
            gemm_floor_s=g[3] * US,
        )
        rows["gemm"], mape["gemm"] = n, err
    return replace(p, elementwise=_fit_elementwise(prof, chip, p, rows, mape))


def _fit_collectives(
    prof: Profile, chip: Chip, p: OpParams, rows: dict[str, int], mape: dict[str, float]
) -> OpParams:
    for kind, fabric in itertools.product(("all_reduce", "send_recv"), ("scale_up", "scale_out")):
        sel = [r for r in prof.collectives if r.kind == kind and r.fabric == fabric]
        if not sel:
            continue
        link = chip.scale_up_bytes_per_s if fabric == "scale_up" else chip.scale_out_bytes_per_s
        scale = [2.0 * (r.ranks - 1) / r.ranks if kind == "all_reduce" else 1.0 for r in sel]
        x = np.array([s * r.size_bytes / link for s, r in zip(scale, sel, strict=True)])
        f, lat, err = fit_two(x, np.array([r.time_s for r in sel]), additive=True)
        p = _with_collective(p, kind, fabric, Collective(lat * US, f))
        rows[f"{kind}.{fabric}"], mape[f"{kind}.{fabric}"] = len(sel), err
    return p


def _with_collective(p: OpParams, kind: str, fabric: str, c: Collective) -> OpParams:
    up = fabric == "scale_up"
    if kind == "all_reduce":
        return replace(p, all_reduce_up=c) if up else replace(p, all_reduce_out=c)
    return replace(p, send_recv_up=c) if up else replace(p, send_recv_out=c)


def _fit_elementwise(
    prof: Profile, chip: Chip, p: OpParams, rows: dict[str, int], mape: dict[str, float]
) -> dict[str, Elementwise]:
    bw = chip.offchip.bandwidth_bytes_per_s
    out = dict(p.elementwise)
    for kind in ELEMENTWISE_KINDS:
        ops = [op for op, k in ELEMENTWISE_OPS.items() if k == kind]
        sel = [r for r in prof.ops if r.op in ops]
        if not sel:
            continue
        x = np.array(
            [r.shape.elementwise_bytes(np.array([float(r.tokens)]))[r.op][0] / bw for r in sel]
        )
        f, floor, err = fit_two(x, np.array([r.time_s for r in sel]), additive=False)
        out[kind] = Elementwise(f, floor * US)
        rows[f"elementwise.{kind}"], mape[f"elementwise.{kind}"] = len(sel), err
    return out
