"""Decode attention against Vidur's attention tables (calibrate/attention.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mtia_cluster.calibrate.attention import (
    AttnRow,
    fit_decode,
    predict_decode_s,
    read_attention_csv,
)
from mtia_cluster.catalog import load_catalog
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model

# Vidur's A100 Llama-2-7B attention.csv (or the rows of it docs/validation.md lists), read
# from a path, never copied into the repository; the provenance test skips without it.
VIDUR_L2 = Path(
    os.environ.get(
        "VIDUR_ATTENTION_CSV", "/tmp/vidur_attn/a100/meta-llama/Llama-2-7b-hf/attention.csv"
    )
)


def _row(tp: int, batch: int, ctx: int, t: float, kv_heads: int = 32) -> AttnRow:
    return AttnRow("x", 4096, 32, kv_heads, tp, batch, 0, ctx, False, t)


def test_fit_recovers_known_fraction_and_floor():
    cat = load_catalog()
    chip = cat.chip("a100")
    shapes = [(tp, b, c) for tp in (1, 2, 8) for b in (1, 8, 64, 200) for c in (128, 1024, 4096)]
    rows = [_row(tp, b, c, 0.0) for tp, b, c in shapes]
    true = predict_decode_s(rows, chip, 0.8, 12e-6)
    rows = [_row(tp, b, c, float(t)) for (tp, b, c), t in zip(shapes, true, strict=True)]
    fit = fit_decode(rows, chip)
    assert fit.fraction == pytest.approx(0.8, abs=0.005)
    assert fit.floor_us == pytest.approx(12.0, abs=0.3)
    assert fit.mape < 0.01


@pytest.mark.parametrize(
    ("model", "tp"), [("llama-2-7b", 1), ("llama-2-7b", 4), ("llama-3.1-8b", 2)]
)
def test_prediction_is_the_cost_models_decode_side_per_layer(model, tp):
    cat = load_catalog()
    chip, m = cat.chip("a100"), cat.model(model)
    it = llm_iteration_model(chip, m, tp=tp, dtype="fp16", kv_dtype="fp16")
    p = chip.op_params
    for batch, ctx in ((1, 100), (64, 2000), (300, 700)):
        row = AttnRow("x", m.hidden, m.heads, m.kv_heads, tp, batch, 0, ctx, False, 1.0)
        mine = predict_decode_s([row], chip, p.attn_decode_bw_fraction, p.attn_floor_s)[0]
        model_s = float(it.breakdown(0.0, batch, batch * ctx)["memory_s"]) / m.layers
        assert mine == pytest.approx(model_s, rel=1e-9)


def test_floor_is_the_decode_side_at_zero_context():
    cat = load_catalog()
    chip, m = cat.chip("h100"), cat.model("llama-2-70b")
    it = llm_iteration_model(chip, m, tp=2, dtype="fp8", kv_dtype="fp8")
    zero = float(it.breakdown(0.0, 8.0, 0.0)["memory_s"])
    assert zero == pytest.approx(m.layers * chip.op_params.attn_floor_s, rel=1e-12)
    assert chip.op_params.attn_floor_s > 0


def test_families_without_a_floor_read_zero():
    cat = load_catalog()
    assert cat.chip("mi300x").op_params.attn_floor_s == 0.0


def test_bad_value_names_file_and_field(tmp_path):
    f = tmp_path / "attention.csv"
    f.write_text(
        "n_embd,n_q_head,n_kv_head,num_tensor_parallel_workers,batch_size,"
        "prefill_chunk_size,kv_cache_size,is_prefill,time_stats.attn_decode.median\n"
        "4096,32,32,1,x,0,64,False,0.1\n",
        encoding="utf-8",
    )
    with pytest.raises(UserError, match=r"attention\.csv: batch_size"):
        read_attention_csv(f)


def test_reads_decode_and_prefill_rows(tmp_path):
    f = tmp_path / "attention.csv"
    f.write_text(
        "# comment\n"
        "n_embd,n_q_head,n_kv_head,num_tensor_parallel_workers,batch_size,prefill_chunk_size,"
        "kv_cache_size,is_prefill,time_stats.attn_decode.median,time_stats.attn_prefill.median\n"
        "4096,32,8,2,16,0,64,False,0.25,\n"
        "4096,32,8,2,1,128,0,True,,0.5\n"
        "4096,32,8,2,1,128,0,True,,\n",
        encoding="utf-8",
    )
    rows = read_attention_csv(f)
    assert [r.prefill for r in rows] == [False, True]
    assert rows[0].time_s == pytest.approx(0.25e-3)
    # 16 sequences x 64 tokens x K+V x 4 KV heads per GPU x 128 dims x 2 bytes
    assert rows[0].kv_bytes == 16 * 64 * 2 * 4 * 128 * 2


@pytest.mark.skipif(not VIDUR_L2.exists(), reason=f"{VIDUR_L2} absent")
def test_catalog_numbers_are_the_fit_of_vidurs_rows():
    chip = load_catalog().chip("a100")
    fit = fit_decode(read_attention_csv(VIDUR_L2), chip)
    p = chip.op_params
    assert fit.fraction == pytest.approx(p.attn_decode_bw_fraction, abs=1e-4)
    assert fit.floor_us == pytest.approx(p.attn_floor_s * 1e6, abs=1e-3)
    assert np.isfinite(fit.mape)
