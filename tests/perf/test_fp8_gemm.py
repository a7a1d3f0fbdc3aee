"""Per-dtype GEMM efficiency (OpParams.for_dtype, k_overhead), 16-bit attention math, and the
FP8 fit on the cited DeepGEMM table (calibrate/gemm_table.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.calibrate.gemm_table import fit_gemm_table, predict_s, read_gemm_table
from mtia_cluster.catalog import load_catalog
from mtia_cluster.errors import UserError
from mtia_cluster.paths import configs_dir
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.ops import GemmEnv, gemm_time_s, grouped_gemm_time_s

CAT = load_catalog()
H100 = CAT.chip("h100")
TABLE = configs_dir() / "catalog" / "gemm_measurements" / "deepgemm-h800-fp8.yaml"


def _gemm(m, k, n, p, dtype="fp8"):
    return float(
        gemm_time_s(
            m,
            k,
            n,
            peak_flops=H100.gemm_peak(dtype),
            bw_bytes_per_s=H100.offchip.bandwidth_bytes_per_s,
            units=H100.compute_units,
            p=p,
            weight_bytes=1.0 if dtype == "fp8" else 2.0,
        )
    )


def test_for_dtype_overrides_only_the_listed_dtype():
    p = H100.op_params
    assert "fp8" in p.gemm_dtypes
    fp8 = p.for_dtype("fp8")
    assert (fp8.gemm_peak_fraction, fp8.gemm_k_overhead) == p.gemm_dtypes["fp8"]
    assert p.for_dtype("fp16") is p and p.gemm_k_overhead == 0.0
    # nothing but the GEMM efficiency changes
    back = dataclasses.replace(fp8, gemm_peak_fraction=p.gemm_peak_fraction, gemm_k_overhead=0.0)
    assert back == p


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 16384),
    k=st.sampled_from([512, 1536, 4096, 8192, 14336]),
    n=st.sampled_from([1024, 5120, 8192, 28672]),
    k0=st.floats(0, 2048),
    dk=st.integers(1, 4096),
)
def test_tile_overhead_never_makes_a_gemm_faster_and_more_k_never_faster(m, k, n, k0, dk):
    p = H100.op_params.for_dtype("fp8")
    base = dataclasses.replace(p, gemm_k_overhead=0.0)
    more = dataclasses.replace(p, gemm_k_overhead=k0)
    assert _gemm(m, k, n, more) >= _gemm(m, k, n, base)
    assert _gemm(m, k + dk, n, more) >= _gemm(m, k, n, more)


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(1, 16),
    m=st.floats(0.5, 8192),
    k=st.sampled_from([2048, 4096, 14336]),
    k0=st.floats(1, 2048),
)
def test_grouped_gemm_pays_the_tile_overhead_too(groups, m, k, k0):
    p = dataclasses.replace(H100.op_params.for_dtype("fp8"), gemm_k_overhead=0.0)
    ones = np.ones((1, groups))

    def t(params):
        env = GemmEnv(
            H100.gemm_peak("fp8"),
            H100.offchip.bandwidth_bytes_per_s,
            H100.compute_units,
            params,
            1.0,
        )
        return float(grouped_gemm_time_s(ones, ones * m, k, 4096, env)[0])

    assert t(dataclasses.replace(p, gemm_k_overhead=k0)) > t(p) > 0


def test_tile_overhead_costs_small_k_gemms_more():
    """A fixed per-tile cost is a larger share of a short-K tile: the measured effect."""
    p = H100.op_params.for_dtype("fp8")
    base = dataclasses.replace(p, gemm_k_overhead=0.0)

    def slowdown(k):
        return _gemm(4096, k, 7168, p) / _gemm(4096, k, 7168, base)

    assert slowdown(512) > slowdown(2048) > slowdown(16384) > 1.0


def test_fp8_iteration_slower_than_fp16_fit_at_fp8_peak():
    """The FP8 GEMMs now use their own measured efficiency (lower than the FP16 fit's at the
    FP8 peak), so a compute-heavy FP8 iteration takes longer than with the FP16 block."""
    model = CAT.model("llama-2-70b")
    it = llm_iteration_model(H100, model, tp=2, dtype="fp8", kv_dtype="fp8")  # type: ignore[arg-type]
    fp16_block = dataclasses.replace(H100.op_params, gemm_dtypes={})
    no_fp8 = dataclasses.replace(H100, op_params=fp16_block)
    it0 = llm_iteration_model(no_fp8, model, tp=2, dtype="fp8", kv_dtype="fp8")  # type: ignore[arg-type]
    t, t0 = it.breakdown(676, 895, 330_000), it0.breakdown(676, 895, 330_000)
    assert float(t["gemm_s"]) > float(t0["gemm_s"])
    assert float(t["memory_s"]) == float(t0["memory_s"])  # KV reads untouched


def test_attention_math_runs_at_the_16_bit_peak_for_fp8_models():
    model = CAT.model("llama-2-70b")
    fp8 = llm_iteration_model(H100, model, tp=2, dtype="fp8", kv_dtype="fp8")  # type: ignore[arg-type]
    fp16 = llm_iteration_model(H100, model, tp=2, dtype="fp16", kv_dtype="fp8")  # type: ignore[arg-type]
    assert fp8.attention_peak_flops == H100.gemm_peak("fp16") < H100.gemm_peak("fp8")
    pairs = 4096 * 2048.0
    a = fp8.breakdown(4096, 0, pairs)["compute_s"]
    b = fp16.breakdown(4096, 0, pairs)["compute_s"]
    assert float(a) == pytest.approx(float(b)) and float(a) > 0


def test_fp8_fit_is_deterministic_and_matches_the_catalog():
    table = read_gemm_table(TABLE)
    base = dataclasses.replace(H100.op_params, gemm_dtypes={})
    a, b = fit_gemm_table(table, H100, base), fit_gemm_table(table, H100, base)
    assert a == b
    assert (a.peak_fraction, a.k_overhead) == H100.op_params.gemm_dtypes["fp8"]
    assert a.fit_mape < a.before_fit_mape and a.all_mape < a.before_all_mape
    assert 0 < a.fit_rows < a.rows == len(table.rows)


def test_gemm_table_predictions_track_the_measurements():
    table = read_gemm_table(TABLE)
    pred = predict_s(table, H100, H100.op_params.for_dtype("fp8"))
    ratio = pred / table.measured_s
    assert np.all((ratio > 0.5) & (ratio < 2.0))


@pytest.mark.parametrize(
    ("rows", "field"),
    [("[[1, 64, 2112, 7168]]", "rows"), ("[[1, 64, 2112, 7168, -5]]", "rows")],
)
def test_gemm_table_strict_input(tmp_path: Path, rows: str, field: str):
    f = tmp_path / "t.yaml"
    f.write_text(f"name: t\nsource: s\nchip: h100\ndtype: fp8\nrows: {rows}\n")
    with pytest.raises(UserError) as e:
        read_gemm_table(f)
    assert e.value.field == field
    f.write_text("name: t\nsource: s\nchip: h100\ndtype: fp8\nrow: [[1, 1, 1, 1, 1]]\n")
    with pytest.raises(UserError):
        read_gemm_table(f)
