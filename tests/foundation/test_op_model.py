"""Operator-level LLM model: monotonicity, context growth, calibrate fit/check on a fixture."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.calibrate import check_profile, fit_profile, read_profile
from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.layer import OPS, LayerShape, op_times_s

CAT = load_catalog()
GPUS = ["a100", "h100", "h200", "b200", "mi300x"]
LLMS = ["llama-3.1-8b", "llama-2-70b", "mixtral-8x7b"]


def _it(chip_name: str, model: str, chip=None):
    chip = chip or CAT.chip(chip_name)
    tp = 1 if model == "llama-3.1-8b" else 4
    return llm_iteration_model(chip, CAT.model(model), tp=tp)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    chip=st.sampled_from(GPUS),
    model=st.sampled_from(LLMS),
    t1=st.integers(0, 8192),
    t2=st.integers(0, 8192),
    decode_share=st.floats(0, 1),
)
def test_more_tokens_never_faster(chip, model, t1, t2, decode_share):
    it = _it(chip, model)
    lo, hi = sorted((t1, t2))
    d_lo, d_hi = round(lo * decode_share), round(hi * decode_share)
    a = float(it.time_s(lo - d_lo, d_lo, 1000))
    b = float(it.time_s(hi - d_hi, d_hi, 1000))
    assert b >= a


@settings(max_examples=30, deadline=None)
@given(
    chip=st.sampled_from(GPUS),
    model=st.sampled_from(LLMS),
    tokens=st.integers(1, 4096),
    ctx=st.integers(0, 500_000),
    scale=st.floats(1.0, 4.0),
)
def test_more_bandwidth_or_flops_never_slower(chip, model, tokens, ctx, scale):
    base = CAT.chip(chip)
    faster_mem = dataclasses.replace(
        base,
        offchip=dataclasses.replace(
            base.offchip, bandwidth_bytes_per_s=base.offchip.bandwidth_bytes_per_s * scale
        ),
    )
    faster_flops = dataclasses.replace(
        base, gemm_dense_flops={k: v * scale for k, v in base.gemm_dense_flops.items()}
    )
    pairs = ctx + tokens * tokens // 2
    t0 = float(_it(chip, model).time_s(tokens, 0, ctx, pairs))
    for fast in (faster_mem, faster_flops):
        assert float(_it(chip, model, fast).time_s(tokens, 0, ctx, pairs)) <= t0 * (1 + 1e-12)


def test_decode_cost_grows_with_context_and_gqa_divides_it():
    it = _it("h100", "llama-2-70b")
    ctx = np.array([0, 1_000, 10_000, 100_000])
    t = it.time_s(0, 64, ctx)
    assert np.all(np.diff(t) > 0)
    # At long context the KV reads are the attention kernel's time: bytes / achieved BW.
    kv = it.breakdown(0, 64, 100_000)["memory_s"]
    p = it.chip.op_params
    want = it.model.layers * p.attn_floor_s + (
        100_000
        * it.kv_bytes_per_token
        / 4
        / (it.chip.offchip.bandwidth_bytes_per_s * p.attn_decode_bw_fraction)
    )
    assert float(kv) == pytest.approx(want, rel=1e-9)


def test_h200_never_slower_than_h100():
    for model in LLMS:
        for p, d, ctx in ((0, 256, 256 * 1000), (2048, 0, 2048), (512, 128, 128 * 4000)):
            h100 = float(_it("h100", model).time_s(p, d, ctx))
            h200 = float(_it("h200", model).time_s(p, d, ctx))
            assert h200 <= h100


# ---------------------------------------------------------------- calibrate on a fixture


def _write_fixture(root: Path, gpu: str = "a100") -> Path:
    """A tiny Vidur-format tree: two model shapes, a few token counts, one collective."""
    chip = CAT.chip(gpu)
    comp = root / "compute" / gpu / "org"
    shapes = {
        "tiny-a": LayerShape(2048, 16, 16, 128, 5632, True, 1),
        "tiny-b": LayerShape(4096, 32, 8, 128, 14336, True, 2),
    }
    # "Measurements" = the shipped model's prediction scaled by a known 1.25: the check must
    # then report exactly 25% error, and a fit must find a model that does better.
    for name, shape in shapes.items():
        d = comp / name
        d.mkdir(parents=True)
        tokens = np.array([1, 8, 64, 512, 2048, 4096])
        times = op_times_s(shape, tokens, chip, "fp16")
        with (d / "mlp.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                [f"time_stats.{op}.median" for op in OPS]
                + ["n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size"]
                + ["use_gated_mlp", "num_tokens", "num_tensor_parallel_workers"]
            )
            for i, t in enumerate(tokens):
                w.writerow(
                    [times[op][i] * 1e3 * 1.25 for op in OPS]
                    + [shape.heads, shape.kv_heads, shape.hidden, shape.ffn, 32000]
                    + ["True", int(t), shape.tp]
                )
    net = root / "network" / f"{gpu}_dgx"
    net.mkdir(parents=True)
    with (net / "all_reduce.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "time_stats.all_reduce.median", "num_workers", "size", "devices_per_node"])
        for i, size in enumerate([1 << 20, 1 << 24, 1 << 27]):
            w.writerow([i, 0.02 + size / 150e9 * 1e3, 8, size, 8])
    return root


def test_calibrate_check_on_fixture_reports_known_error(tmp_path):
    root = _write_fixture(tmp_path)
    rep = check_profile(read_profile(root, "a100"), CAT.chip("a100"))
    assert rep.rows == 2 * 6 * len(OPS) + 3
    for op in OPS:
        assert rep.per_op[op] == pytest.approx(0.2, abs=1e-9)  # |1/1.25 - 1|
    assert set(rep.per_model) == {"tiny-a", "tiny-b"}
    res = CliRunner().invoke(cli, ["calibrate", "check", str(root), "--chip", "a100", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["rows"] == rep.rows and doc["mape"] == pytest.approx(rep.mape)
    assert doc["per_op"]["mlp_up_proj"] == pytest.approx(0.2)


def test_calibrate_fit_is_deterministic_and_improves(tmp_path):
    root = _write_fixture(tmp_path)
    chip = CAT.chip("a100")
    prof = read_profile(root, "a100")
    a, b = fit_profile(prof, chip), fit_profile(read_profile(root, "a100"), chip)
    assert a.params == b.params and a.mape == b.mape
    before = check_profile(prof, chip).mape
    after = check_profile(prof, chip, a.params).mape
    assert after < before


def test_calibrate_refuses_wrong_chip_and_missing_dir(tmp_path):
    root = _write_fixture(tmp_path)
    with pytest.raises(UserError, match="no measurements for this chip"):
        read_profile(root, "h100")
    with pytest.raises(UserError, match="not found"):
        read_profile(tmp_path / "nope", "a100")
    res = CliRunner().invoke(cli, ["calibrate", "check", str(root), "--chip", "h100"])
    assert res.exit_code == 2 and "no measurements" in res.output


def test_calibrate_fit_cli_writes_calibrated_numbers_deterministically(tmp_path, monkeypatch):
    import shutil

    from mtia_cluster.config import load_yaml
    from mtia_cluster.paths import configs_dir

    cfg = tmp_path / "configs"
    shutil.copytree(configs_dir(), cfg)
    monkeypatch.setenv("MTIA_CLUSTER_CONFIGS", str(cfg))
    data = _write_fixture(tmp_path / "data")
    family = cfg / "catalog" / "op_models" / "nvidia-gpu.yaml"
    texts = []
    for _ in range(2):
        res = CliRunner().invoke(cli, ["calibrate", "fit", str(data), "--chip", "a100"])
        assert res.exit_code == 0, res.output
        texts.append(family.read_text())
    assert texts[0] == texts[1]
    doc = load_yaml(family)
    assert doc["gemm"]["peak_fraction"]["status"] == "calibrated"
    assert doc["fitted_on"]["chip"] == "a100"
    assert doc["fitted_on"]["models"] == ["tiny-a", "tiny-b"]
    assert str(data) in doc["sources"]["fit"]
    # A fresh load of the catalog under that root predicts with the fitted numbers (the
    # catalog is cached per process; the CLI runs one command per process).
    from mtia_cluster.catalog.loader import _load

    _load.cache_clear()
    chip = load_catalog(cfg).chip("a100")
    assert chip.op_params.gemm_peak_fraction == doc["gemm"]["peak_fraction"]["value"]
    # The H100 never fitted still loads and is checked with the family numbers.
    h100 = load_catalog(cfg).chip("h100")
    assert h100.op_params.gemm_peak_fraction == chip.op_params.gemm_peak_fraction


def test_every_chip_states_its_peak_basis_and_tdp():
    for chip in CAT.chips.values():
        assert "dense" in chip.peak_basis, chip.name
        assert f"{chip.tdp_w:g} W" in chip.peak_basis, chip.name
