"""Held-out GPU sets (TensorRT-LLM perf-overview rows on H200, A100, B200, ...) and
TensorRT-LLM's KV-cache rule (a fraction of the memory left free after the weights)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.llm import ACTIVATION_RESERVE_BYTES, MEMORY_UTILIZATION
from mtia_cluster.planning.trtllm_heldout import (
    REQUESTS,
    Replayed,
    heldout_sets,
    rank_pairs,
    replay_or_nan,
    set_mape,
)
from mtia_cluster.planning.trtllm_overview import (
    MOE_FIT_ROWS,
    ROWS_2025,
    ROWS_V011,
    ROWS_V013,
    Row,
    replay_row,
)

CAT = load_catalog()
SETS = heldout_sets()


def test_every_heldout_row_runs_on_a_catalog_chip_in_a_dtype_it_has():
    """Rows name catalog chips and models, a dtype with a dense peak on that chip, the
    pages' request count for their lengths, and no held-out row is a fitted one."""
    fitted = set(MOE_FIT_ROWS)
    for s in SETS:
        assert s.rows, s.title
        assert s.kv_free_fraction in (0.95, 0.99)
        for r in s.rows:
            chip = CAT.chip(r.gpu)
            assert r.dtype in chip.gemm_dense_flops, (s.title, r.dtype)
            assert CAT.model(r.model).kind == "llm"
            assert r.requests == REQUESTS[(r.isl, r.osl)]
            assert r.published > 0
            assert r not in fitted
    gpus = {r.gpu for s in SETS for r in s.rows}
    assert {"h200", "a100", "b200", "gb200"} <= gpus


def test_h100_fp8_tp2_v013_rows_are_the_ones_already_replayed():
    """The v0.13.0 column transcription agrees with the H100 FP8 TP2 rows the MoE fit's page
    already carries (same page, typed twice): the same published figures per length."""
    known = {(r.isl, r.osl): r.published for r in ROWS_V013 if r.model == "llama-2-70b"}
    (held,) = [s for s in SETS if s.title == "v0.13.0 Llama-2-70B h100 fp8 TP2"]
    assert {(r.isl, r.osl): r.published for r in held.rows} == known


@settings(max_examples=40, deadline=None)
@given(
    system=st.sampled_from(
        [
            ("llama-2-70b", "h100", 1, "fp8"),
            ("llama-2-70b", "h100", 2, "fp16"),
            ("llama-2-70b", "a100", 4, "fp16"),
            ("llama-3.1-8b", "h200", 1, "fp8"),
            ("llama-3.1-405b", "h100", 8, "fp8"),
            ("llama-3.1-70b", "b200", 1, "fp4"),
        ]
    ),
    fraction=st.floats(0.9, 1.0),
)
def test_trtllm_kv_rule_never_holds_less_than_the_catalog_rule(system, fraction):
    """f x (C - R - W) >= 0.9 C - R - W for f >= 0.9 (the difference is (f - 0.9) C +
    (1 - f)(R + W) >= 0), and the rule is exactly that arithmetic on the chip's bytes."""
    model, chip, tp, dtype = system
    kv = "fp8" if dtype in ("fp8", "fp4") else dtype
    it = llm_iteration_model(CAT.chip(chip), CAT.model(model), tp=tp, dtype=dtype, kv_dtype=kv)
    trt = it.kv_tokens_of_free_memory(fraction)
    assert trt >= it.kv_capacity_tokens
    cap = it.chip.offchip.capacity_bytes
    free = tp * (cap - ACTIVATION_RESERVE_BYTES) - it.weight_bytes
    assert trt == int(fraction * free // it.kv_bytes_per_token)
    vllm = tp * (cap * MEMORY_UTILIZATION - ACTIVATION_RESERVE_BYTES) - it.weight_bytes
    assert it.kv_capacity_tokens == int(vllm // it.kv_bytes_per_token)


def test_weight_filled_row_holds_many_more_requests_under_the_trtllm_rule():
    """Llama-2-70B FP16 on 2 x H100 (weights ~69 GB per 80 GB GPU): the catalog rule leaves
    ~1.5 GB per GPU for KV, TensorRT-LLM's 0.99 of free memory ~6x that; the replay with the
    larger cache is faster, and both replays are deterministic."""
    (s,) = [s for s in SETS if s.title == "v0.13.0 Llama-2-70B h100 fp16 TP2"]
    row = next(r for r in s.rows if (r.isl, r.osl) == (128, 2048))
    row = dataclasses.replace(row, requests=200)
    sim0, fit0 = replay_row(CAT, row)
    sim1, fit1 = replay_row(CAT, row, kv_free_fraction=0.99)
    assert fit1 >= 5 * max(fit0, 1)
    assert sim1 > 2 * sim0
    assert replay_row(CAT, row, kv_free_fraction=0.99) == (sim1, fit1)


def test_existing_h100_tables_are_replayed_as_before():
    """Rows without gpu/dtype are H100 FP8 (the defaults), and replaying one on an explicit
    H100 chip gives the identical figure (the held-out fields change nothing for them)."""
    for r in (ROWS_2025[0], ROWS_V011[1]):
        assert (r.gpu, r.dtype) == ("h100", "fp8")
    r = dataclasses.replace(ROWS_V011[1], requests=300)
    assert replay_row(CAT, r) == replay_row(CAT, r, CAT.chip("h100"))


def test_a_row_the_memory_cannot_hold_is_reported_not_dropped():
    """405B FP8 on one H100 does not fit: the row gives NaN and the set's MAPE counts only
    the rows that ran (and says how many)."""
    bad = Row("llama-3.1-405b", 1, 128, 128, 10, 100.0, 2048, 64)
    sim, fit = replay_or_nan(CAT, bad)
    assert np.isnan(sim) and fit == 0
    m, mean, n = set_mape([float("nan"), 1.1, 0.8])
    assert n == 2 and m == pytest.approx(0.15) and mean == pytest.approx(0.95)
    assert np.isnan(set_mape([float("nan")])[0])


def test_rank_pairs_match_rows_on_page_model_tp_dtype_and_lengths():
    """Only the same published row on both GPUs pairs up; ratios are a / b."""
    a = Row("llama-3.1-8b", 1, 128, 128, 1, 200.0, 8192, 2048, 1, "h200", "fp8")
    b = dataclasses.replace(a, gpu="h100", published=100.0)
    other_tp = dataclasses.replace(b, tp=2)
    done = [
        Replayed("2025", a, (0.0, 0), (300.0, 5)),
        Replayed("2025", b, (0.0, 0), (100.0, 5)),
        Replayed("2025", other_tp, (0.0, 0), (50.0, 5)),
        Replayed("v0.13.0", b, (0.0, 0), (10.0, 5)),
    ]
    (p,) = rank_pairs(done, "h200", "h100")
    assert p.published == 2.0 and p.simulated == 3.0
    assert rank_pairs(done, "h100", "a100") == ()


def test_a_replica_only_the_trtllm_rule_fits_runs_under_it():
    """Llama 3.1 70B FP8 on one H100 (v0.17 page): ~70.6 GB of weights leave no KV under the
    catalog's 0.9-of-capacity rule (the replica is refused), but TensorRT-LLM's 0.95 of free
    memory holds tens of full 128/2048 requests, so the row replays under that rule."""
    (s,) = [s for s in SETS if s.title == "v0.17 Llama 3.1 70B h100 fp8 TP1"]
    row = dataclasses.replace(s.rows[1], requests=100)
    assert (row.isl, row.osl) == (128, 2048)
    sim, fit = replay_or_nan(CAT, row)
    assert np.isnan(sim) and fit == 0
    with pytest.raises(UserError, match="does not fit"):
        llm_iteration_model(CAT.chip("h100"), CAT.model(row.model), tp=1, dtype="fp8")
    sim, fit = replay_or_nan(CAT, row, s.kv_free_fraction)
    assert np.isfinite(sim) and sim > 0 and 10 <= fit < 100
