"""Cost-model invariants: monotone within a tier, bandwidth helps, the SRAM residency cliff."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.errors import UserError
from mtia_cluster.perf import embedding_hit_fraction, llm_iteration_model, rr_batch_cost
from mtia_cluster.perf.rr import SRAM_CACHE_FRACTION

CAT = load_catalog()
RR_MODELS = sorted(n for n, m in CAT.models.items() if m.kind == "rr")
CHIPS = sorted(n for n, c in CAT.chips.items() if "fp16" in c.gemm_dense_flops)


@settings(max_examples=60, deadline=None)
@given(
    chip=st.sampled_from(CHIPS),
    model=st.sampled_from(RR_MODELS),
    b1=st.integers(1, 8192),
    b2=st.integers(1, 8192),
)
def test_throughput_never_falls_with_batch_within_one_tier(chip, model, b1, b2):
    lo, hi = sorted((b1, b2))
    c = rr_batch_cost(
        CAT.chip(chip),
        CAT.model(model),
        [lo, hi],
        dtype="fp16",
        host=CAT.host("grand-teton-mtia2i"),
    )
    if c.activations_spill[0] == c.activations_spill[1]:  # same memory tier
        assert c.throughput_per_s[1] >= c.throughput_per_s[0] * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(RR_MODELS), batch=st.integers(1, 8192), factor=st.floats(1.0, 16.0))
def test_more_offchip_bandwidth_never_slows(model, batch, factor):
    chip = CAT.chip("mtia-2i")
    offchip = dataclasses.replace(
        chip.offchip, bandwidth_bytes_per_s=chip.offchip.bandwidth_bytes_per_s * factor
    )
    faster = dataclasses.replace(chip, offchip=offchip)
    a = rr_batch_cost(chip, CAT.model(model), [batch])
    b = rr_batch_cost(faster, CAT.model(model), [batch])
    assert b.device_s[0] <= a.device_s[0]
    if a.bound[0] == "lpddr":  # memory-bound: strictly faster
        assert b.device_s[0] < a.device_s[0] or factor < 1 + 1e-9  # below float resolution


def test_sram_residency_cliff_for_weights():
    """Dense weights just over the scratch share fall off SRAM: small batches slow sharply."""
    chip, base = CAT.chip("mtia-2i"), CAT.model("lc5")
    scratch = chip.sram.capacity_bytes * (1 - SRAM_CACHE_FRACTION)
    fits = dataclasses.replace(base, dense_weight_bytes=scratch * 0.95)
    spills = dataclasses.replace(base, dense_weight_bytes=scratch * 1.05)
    a, b = rr_batch_cost(chip, fits, [16]), rr_batch_cost(chip, spills, [16])
    assert a.weights_in_sram and not b.weights_in_sram
    # 10% more weight bytes, but the weight traffic moves from 2.7 TB/s SRAM to 0.2 TB/s LPDDR.
    assert b.device_s[0] > 5 * a.device_s[0]
    assert b.bound[0] == "lpddr"


def test_activation_spill_cliff_with_batch():
    """A memory-light model whose activations outgrow SRAM scratch loses throughput at the
    batch size where they spill, although larger batches amortize more (ISCA'25 §6: -90%)."""
    chip = CAT.chip("mtia-2i")
    model = dataclasses.replace(CAT.model("lc1"), activation_bytes_per_sample=128e3)
    c = rr_batch_cost(chip, model, np.arange(256, 4097, 64))
    spill = c.activations_spill
    assert not spill[0] and spill[-1]
    k = int(np.argmax(spill))  # first spilled batch size
    per_item = c.device_s / c.batch
    assert per_item[k] > 1.5 * per_item[k - 1]
    assert c.bound[k - 1] != "lpddr" and c.bound[k] == "lpddr"


def test_embedding_hit_rate_follows_cache_share():
    chip, model = CAT.chip("mtia-2i"), CAT.model("lc2")  # 20 GB table: the calibration point
    assert embedding_hit_fraction(chip, model) == pytest.approx(0.5, abs=0.03)
    small = dataclasses.replace(model, embedding_table_bytes=chip.sram.capacity_bytes * 0.1)
    assert embedding_hit_fraction(chip, small) == 1.0
    big = dataclasses.replace(model, embedding_table_bytes=model.embedding_table_bytes * 10)
    assert embedding_hit_fraction(chip, big) < embedding_hit_fraction(chip, model)


def test_bad_dtype_names_chip_file():
    with pytest.raises(UserError, match=r"mtia-1\.yaml.*bf16"):
        rr_batch_cost(CAT.chip("mtia-1"), CAT.model("lc1"), [64], dtype="bf16")


def test_llm_decode_time_grows_with_context_and_batch():
    it = llm_iteration_model(CAT.chip("h100"), CAT.model("llama-3.1-8b"))
    ctx = np.array([128, 1024, 8192, 32768])
    t = it.time_s(0, 32, 32 * ctx)
    assert np.all(np.diff(t) > 0)
    tb = it.time_s(0, np.array([1, 8, 64, 256]), np.array([1, 8, 64, 256]) * 1024)
    assert np.all(np.diff(tb) >= 0)
    # Decode at small batch is bandwidth-bound: GEMM time ~ weights / effective bandwidth.
    weights_s = it.weight_bytes / (3.35e12 * it.chip.op_params.gemm_bw_fraction)
    assert float(it.breakdown(0, 1, 512)["gemm_s"]) == pytest.approx(weights_s, rel=0.1)
    assert it.bound(0, 1, 512) == "hbm" and it.bound(8192, 0, 8192) == "compute"


def test_llm_kv_capacity_and_fit():
    h100, llama70 = CAT.chip("h100"), CAT.model("llama-2-70b")
    with pytest.raises(UserError, match="does not fit"):
        llm_iteration_model(h100, llama70, tp=1)
    bf16 = llm_iteration_model(h100, llama70, tp=4)
    fp8kv = llm_iteration_model(h100, llama70, tp=4, kv_dtype="fp8")
    assert abs(fp8kv.kv_capacity_tokens - 2 * bf16.kv_capacity_tokens) <= 1  # floor rounding
    with pytest.raises(UserError, match="scale-up domain"):
        llm_iteration_model(h100, llama70, tp=16)


def test_moe_expert_gemms_grow_then_amortize():
    it = llm_iteration_model(CAT.chip("h200"), CAT.model("mixtral-8x7b"), tp=2)
    tokens = np.array([1.0, 4.0, 64.0, 4096.0])
    gemm = it.breakdown(tokens, 0 * tokens, 0 * tokens)["gemm_s"]
    assert np.all(np.diff(gemm) > 0)
    per_token = gemm / tokens
    assert np.all(np.diff(per_token) < 0)  # expert weights are shared by more tokens
    # One token reads 2 of 8 experts: far less than the 8-expert cost at 64 tokens.
    assert gemm[0] < 0.5 * gemm[2]


def test_more_tensor_parallelism_cuts_memory_time():
    chip, model = CAT.chip("h100"), CAT.model("llama-3.1-70b")
    t2 = llm_iteration_model(chip, model, tp=2, dtype="fp8").breakdown(0, 16, 16 * 2048)
    t8 = llm_iteration_model(chip, model, tp=8, dtype="fp8").breakdown(0, 16, 16 * 2048)
    floor_s = model.layers * chip.op_params.attn_floor_s  # per layer, not sharded
    assert floor_s > 0
    assert t8["memory_s"] - floor_s == pytest.approx((t2["memory_s"] - floor_s) / 4)
    assert t8["comm_s"] > t2["comm_s"]
