"""MoE expert-GEMM efficiency (``moe.expert_gemm_peak_scale``) and the MoE activation kernel:
the fit reproduces the catalog value, steps stay monotone, dense models are untouched."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.catalog.op_model import op_model_path, parse_op_params
from mtia_cluster.config import load_yaml
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.moe import act_bytes
from mtia_cluster.perf.ops import ACT_BYTES
from mtia_cluster.planning.trtllm_overview import (
    MOE_FIT_ROWS,
    fit_expert_scale,
    mape,
    ratios,
    with_expert_scale,
)

CAT = load_catalog()
STORED = CAT.chip("h100").op_params.moe_expert_peak_scale
FINAL_STEP = 0.025 / 16  # SCALE_GRID's spacing after grid_min's two refinements
# (model, chip, tp, ep): MoE systems with and without expert parallelism
MOE = [
    ("mixtral-8x7b", "h100", 2, 1),
    ("mixtral-8x7b", "mi300x", 1, 2),
    ("deepseek-v3", "h200", 8, 1),
    ("deepseek-v3", "h200", 1, 8),
    ("llama-4-maverick", "h200", 4, 2),
    ("mixtral-8x7b", "mtia-2i", 8, 1),
]


def _it(system, scale: float | None = None, dtype: str | None = "fp8"):
    name, chip_name, tp, ep = system
    chip = CAT.chip(chip_name)
    if scale is not None:
        chip = with_expert_scale(chip, scale)
    if dtype not in chip.gemm_dense_flops:
        dtype = None
    return llm_iteration_model(chip, CAT.model(name), tp=tp, ep=ep, dtype=dtype)  # type: ignore[arg-type]


@pytest.mark.slow
def test_fit_reproduces_the_catalog_value():
    """The deterministic fit on the v0.13.0 Mixtral rows lands on the number the nvidia-gpu
    family file stores, and it beats the dense efficiency (scale 1) on those rows."""
    fit = fit_expert_scale(CAT)
    assert fit.scale == pytest.approx(STORED, abs=1e-4)
    assert fit.fit_mape < fit.unscaled_mape


def test_catalog_value_is_the_fit_loss_minimum_on_the_final_grid():
    """A quicker form of the fit check: the stored scale's MAPE is no worse than at the
    neighbouring points of the fit's finest grid, and evaluating it twice agrees exactly."""
    at = mape(ratios(CAT, MOE_FIT_ROWS, STORED))
    assert at == mape(ratios(CAT, MOE_FIT_ROWS, STORED))
    for s in (STORED - FINAL_STEP, STORED + FINAL_STEP):
        assert at <= mape(ratios(CAT, MOE_FIT_ROWS, s))
    assert at < mape(ratios(CAT, MOE_FIT_ROWS, 1.0))


@settings(max_examples=25, deadline=None)
@given(
    model=st.sampled_from(["llama-2-70b", "llama-3.1-8b", "llama-3.1-70b"]),
    tokens=st.integers(1, 8192),
    ctx=st.integers(0, 400_000),
    scale=st.floats(0.05, 1.0),
)
def test_dense_step_ignores_the_expert_scale(model, tokens, ctx, scale):
    """Only routed experts use the scale: a dense model's every part is bit-identical."""
    tp = 1 if model == "llama-3.1-8b" else 2
    base = _it((model, "h100", tp, 1))
    other = _it((model, "h100", tp, 1), scale)
    a, b = base.breakdown(tokens, 0, ctx), other.breakdown(tokens, 0, ctx)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@settings(max_examples=30, deadline=None)
@given(
    system=st.sampled_from(MOE),
    t1=st.integers(0, 16384),
    t2=st.integers(0, 16384),
    s1=st.floats(0.05, 1.0),
    s2=st.floats(0.05, 1.0),
)
def test_moe_step_monotone_in_tokens_and_expert_efficiency(system, t1, t2, s1, s2):
    """More tokens are never faster; a less efficient expert GEMM is never faster."""
    lo, hi = sorted((t1, t2))
    slo, shi = sorted((s1, s2))
    it = _it(system, shi)
    assert float(it.time_s(hi, 0, 1000)) >= float(it.time_s(lo, 0, 1000))
    assert float(_it(system, slo).time_s(hi, 0, 1000)) >= float(it.time_s(hi, 0, 1000))


@settings(max_examples=30, deadline=None)
@given(system=st.sampled_from(MOE), tokens=st.integers(1, 8192), factor=st.floats(1.0, 4.0))
def test_moe_step_with_scale_never_slower_on_a_faster_chip(system, tokens, factor):
    """More FLOPs or bandwidth never slow a MoE step down at any expert efficiency."""
    it = _it(system, 0.5)
    base = it.chip
    flops = dataclasses.replace(
        base, gemm_dense_flops={k: v * factor for k, v in base.gemm_dense_flops.items()}
    )
    bw = dataclasses.replace(
        base,
        offchip=dataclasses.replace(
            base.offchip, bandwidth_bytes_per_s=base.offchip.bandwidth_bytes_per_s * factor
        ),
    )
    t0 = float(it.time_s(tokens, 0, 1000))
    for chip in (flops, bw):
        faster = dataclasses.replace(it, chip=chip)
        assert float(faster.time_s(tokens, 0, 1000)) <= t0 * (1 + 1e-12)


def test_expert_scale_slows_compute_bound_steps_not_weight_bound_ones():
    """The scale lowers the grouped GEMMs' compute rate: a large Mixtral step grows by most
    of the expert GEMMs' share, a decode step of 8 tokens (weight-bound; only the p-norm's
    ridge term and the experts' partial tiles feel the compute rate) moves ~6x less."""
    one, fitted = _it(MOE[0], 1.0), _it(MOE[0], STORED)
    big = float(fitted.time_s(4096, 0, 0)) / float(one.time_s(4096, 0, 0))
    small = float(fitted.time_s(0, 8, 8000)) / float(one.time_s(0, 8, 8000))
    assert big > 1.1
    assert small - 1.0 < (big - 1.0) / 4


def test_moe_activation_runs_on_every_routed_row():
    """Mixtral routes each token to 2 experts of ffn 14,336 (its dense ``ffn`` field is one
    expert's): the gated activation reads two halves and writes one per routed row; with
    expert parallelism the busiest group's rows count, at least its share."""
    it = _it(MOE[0])
    t = np.array([64.0, 4096.0])
    expect = 3.0 * t * 2 * 14336 / 2 * ACT_BYTES  # all 8 experts hit at these counts
    assert act_bytes(t, it.moe_layer) == pytest.approx(expect, rel=1e-9)
    ds = _it(("deepseek-v3", "h200", 1, 8)).moe_layer
    skewed = dataclasses.replace(ds, skew=1.0)
    share = 3.0 * 4096 / 8 * (8 + 1) * 2048 * ACT_BYTES
    assert act_bytes(4096.0, ds) == pytest.approx(share, rel=1e-6)
    assert act_bytes(4096.0, skewed) > share


@pytest.mark.parametrize("value", [0.0, 1.5, -0.2])
def test_family_file_refuses_a_bad_expert_scale(value):
    path = op_model_path("nvidia-gpu")
    data = load_yaml(path)
    data["moe"]["expert_gemm_peak_scale"]["value"] = value
    with pytest.raises(UserError, match=r"moe\.expert_gemm_peak_scale"):
        parse_op_params(data, path)


def test_family_file_refuses_an_unknown_moe_key():
    path = op_model_path("nvidia-gpu")
    data = load_yaml(path)
    data["moe"]["expert_gemm_peak_scal"] = data["moe"].pop("expert_gemm_peak_scale")
    with pytest.raises(UserError, match="expert_gemm_peak_scal"):
        parse_op_params(data, path)
