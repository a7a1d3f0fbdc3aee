"""LLM Server capacity by replay: answers move the right way with SLO and hardware."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.planning.llm_server import LengthDist, llm_offline_replay, llm_server_capacity

CAT = load_catalog()
LIMITS = ReplicaLimits(2048, 256, 16, 1)


def _capacity(tp=1, ttft=2.0, tpot=0.1, chip="h100", n=800):
    return llm_server_capacity(
        CAT.chip(chip) if isinstance(chip, str) else chip,
        CAT.model("llama-3.1-8b"),
        tp=tp,
        dtype="fp8",
        kv_dtype="fp8",
        limits=LIMITS,
        input_len=LengthDist(512, 0.8),
        output_len=LengthDist(128, 0.8),
        ttft_p99_s=ttft,
        tpot_p99_s=tpot,
        n_requests=n,
        rel_tol=0.05,
    )


def test_found_rate_passes_and_a_higher_one_failed():
    res = _capacity()
    assert res.rate_per_s > 0
    assert (res.rate_per_s, True) in res.search.evaluations
    assert res.search.lowest_failing <= res.rate_per_s * 1.05 + 1e-9


def test_tighter_slo_means_less_capacity():
    loose, tight = _capacity(tpot=0.1), _capacity(tpot=0.012)
    assert tight.rate_per_s < loose.rate_per_s


def test_more_bandwidth_same_compute_never_less_capacity():
    """Bandwidth alone (H100 vs H200 is also in test_op_model)."""
    h100 = CAT.chip("h100")
    offchip = dataclasses.replace(
        h100.offchip, bandwidth_bytes_per_s=2 * h100.offchip.bandwidth_bytes_per_s
    )
    fast = dataclasses.replace(h100, offchip=offchip)
    for tpot in (0.012, 0.05):
        base, more = _capacity(tpot=tpot, chip=h100), _capacity(tpot=tpot, chip=fast)
        assert more.rate_per_s >= base.rate_per_s * 0.95  # within the 5% search tolerance
    assert _capacity(tpot=0.05, chip=fast).rate_per_s > _capacity(tpot=0.05).rate_per_s


def test_length_dist_respects_clip_and_mean():
    import numpy as np

    rng = np.random.default_rng(0)
    x = LengthDist(300, 1.0, 1, 1024).sample(rng, 200_000)
    assert x.min() >= 1 and x.max() <= 1024
    assert x.mean() == pytest.approx(300, rel=0.08)  # clipping trims the tail a little


# (chip, tp, dtype): Llama-2-70B replicas whose KV cache holds 256 sequences of 2,300 tokens,
# so the offline run can never preempt (the engine's greedy admission would otherwise make a
# thrashing offline run slower than a paced server: docs/validation.md).
NO_PREEMPT_SYSTEMS = [("h100", 4, "fp8"), ("h200", 2, "fp8"), ("a100", 8, "fp16")]
POOL = 20_000  # > 600 s x the fastest system's rate (H100 TP4 FP8, 256/256: ~29.4 req/s)


@settings(max_examples=4, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate))
@given(
    system=st.sampled_from(NO_PREEMPT_SYSTEMS),
    seqs=st.sampled_from([64, 128, 256]),
    isl=st.sampled_from([256, 1024]),
    osl=st.sampled_from([256, 512]),
)
@example(system=("h100", 4, "fp8"), seqs=256, isl=256, osl=256)  # the fastest: the pool's bound
def test_server_never_exceeds_offline_capacity(system, seqs, isl, osl):
    """LoadGen: no latency-bounded arrival rate beats the same system kept full."""
    chip, tp, dtype = system
    kwargs = dict(
        tp=tp,
        dtype=dtype,
        kv_dtype=dtype,
        limits=ReplicaLimits(4096, seqs, 16, 1),
        input_len=LengthDist(isl, 0.8),
        output_len=LengthDist(osl, 0.8),
    )
    model = CAT.model("llama-2-70b")
    off = llm_offline_replay(CAT.chip(chip), model, n_requests=POOL, **kwargs)
    srv = llm_server_capacity(
        CAT.chip(chip), model, ttft_p99_s=2.0, tpot_p99_s=0.2, n_requests=POOL, **kwargs
    )
    assert srv.rate_per_s * 600 <= POOL  # every replay spanned LoadGen's 600 s
    assert srv.output_tokens_per_s <= off.steady_tokens_per_s
    assert off.steady_tokens_per_s >= off.output_tokens_per_s  # the drain only lowers it


@pytest.mark.parametrize(("chip", "tp", "seqs"), [("h100", 2, 1024), ("h200", 2, 1024)])
def test_server_never_exceeds_offline_under_kv_pressure_without_eviction(chip, tp, seqs):
    """With TensorRT-LLM's guaranteed_no_evict admission the offline run cannot thrash
    (recompute preemptions) even when max_num_seqs overcommits the KV cache, so the property
    holds on the systems that broke it under greedy admission (docs/validation.md)."""
    kwargs = dict(
        tp=tp,
        dtype="fp8",
        kv_dtype="fp8",
        limits=ReplicaLimits(4096, seqs, 16, 1, False, "guaranteed_no_evict"),
        input_len=LengthDist(300, 1.0),
        output_len=LengthDist(294.45, 0.8),
    )
    model = CAT.model("llama-2-70b")
    off = llm_offline_replay(CAT.chip(chip), model, n_requests=POOL, **kwargs)
    srv = llm_server_capacity(
        CAT.chip(chip), model, ttft_p99_s=2.0, tpot_p99_s=0.2, n_requests=POOL, **kwargs
    )
    assert srv.rate_per_s * 600 <= POOL
    assert srv.output_tokens_per_s <= off.steady_tokens_per_s


def test_loadgen_p99_is_the_sorted_element_at_floor_of_099n():
    """LoadGen (loadgen/results.cc) takes latencies[sample_count * 0.99] of the sorted
    per-sample values, not an interpolated percentile; NaN TPOTs (one-token samples) drop."""
    import numpy as np

    from mtia_cluster.planning.llm_server import loadgen_p99

    x = np.arange(1.0, 201.0)  # 200 samples: index 198 -> 199
    assert loadgen_p99(np.random.default_rng(1).permutation(x)) == 199.0
    assert loadgen_p99(np.arange(1.0, 101.0)) == 100.0  # 100 samples: index 99 -> the max
    assert loadgen_p99(np.array([np.nan, 5.0, np.nan])) == 5.0
    assert loadgen_p99(np.array([np.nan])) == 0.0


def _server_run(min_duration_s: float):
    """Llama-3.1-8B FP8 on one H100, Server rules with `min_duration_s`."""
    return llm_server_capacity(
        CAT.chip("h100"),
        CAT.model("llama-3.1-8b"),
        tp=1,
        dtype="fp8",
        kv_dtype="fp8",
        limits=LIMITS,
        input_len=LengthDist(512, 0.8),
        output_len=LengthDist(128, 0.8),
        ttft_p99_s=2.0,
        tpot_p99_s=0.1,
        n_requests=20_000,
        rel_tol=0.05,
        min_duration_s=min_duration_s,
    )


def test_server_run_spans_the_minimum_duration_and_reports_loadgen_completed_tokens():
    """Each replay issues ceil(rate x min_duration) queries; the reported throughput is
    LoadGen's Completed tokens/s (all tokens / last completion), which pays the drain after
    the last arrival, so it is below the scheduled rate x mean output, and a longer run
    (the drain a smaller share) never reports less per second at the same rate."""
    short = _server_run(30.0)
    assert short.queries == math.ceil(short.rate_per_s * 30.0)
    assert 0 < short.output_tokens_per_s < short.scheduled_tokens_per_s
    longer = _server_run(120.0)
    assert longer.queries == math.ceil(longer.rate_per_s * 120.0) > short.queries
    drain_short = short.output_tokens_per_s / short.scheduled_tokens_per_s
    drain_long = longer.output_tokens_per_s / longer.scheduled_tokens_per_s
    assert drain_long > drain_short


def test_server_sizes_the_kv_cache_by_tensorrt_llms_free_memory_fraction():
    """`kv_free_fraction` reaches the Server search as it reaches the Offline replay
    (`LLMIterationModel.kv_tokens`): a cache of 2% of the free memory (~10k tokens, a
    dozen 640-token requests) caps the rate well below the 90% cache's."""
    kwargs = dict(
        tp=2,
        dtype="fp8",
        kv_dtype="fp8",
        limits=ReplicaLimits(4096, 256, 16, 1),
        input_len=LengthDist(512, 0.8),
        output_len=LengthDist(128, 0.8),
        ttft_p99_s=2.0,
        tpot_p99_s=0.2,
        n_requests=3000,
        rel_tol=0.05,
    )
    chip, model = CAT.chip("h100"), CAT.model("llama-2-70b")
    big = llm_server_capacity(chip, model, kv_free_fraction=0.9, **kwargs)
    small = llm_server_capacity(chip, model, kv_free_fraction=0.02, **kwargs)
    assert small.rate_per_s < 0.5 * big.rate_per_s
