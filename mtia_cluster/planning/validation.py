"""Validation checks that need the engine (replay + search), added to the cost-model suite.

`run_all` is what `mtia-cluster validate` runs: the cost-model checks of
:mod:`mtia_cluster.perf.validation` followed by the replay-based ones here.
"""

from __future__ import annotations

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.perf.validation import (
    CHIP_CHECK_MODELS,
    LLAMA2_ISL,
    LLAMA2_MAX_SEQS,
    LLAMA2_OSL,
    LLAMA2_TP,
    CheckResult,
    check_result,
    run_validation,
)
from mtia_cluster.planning.capacity import capacity
from mtia_cluster.planning.llm_server import LengthDist, llm_server_capacity
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.workloads import LLMModel

# Enough requests that the run lasts LoadGen's 600 s minimum at the published rate
# (2,701 tokens/s/GPU x 2 GPUs / 294 tokens = 18.4 requests/s).
SERVER_REQUESTS = 12_000
SERVER_TOKEN_BUDGET = 4096  # max_num_batched_tokens (estimate; TRT-LLM's setting unknown)


def check_h100_llama2_server(cat: Catalog) -> CheckResult:
    model = cat.model("llama-2-70b")
    assert isinstance(model, LLMModel)
    res = llm_server_capacity(
        cat.chip("h100"),
        model,
        tp=LLAMA2_TP,
        dtype="fp8",
        kv_dtype="fp8",
        limits=ReplicaLimits(SERVER_TOKEN_BUDGET, LLAMA2_MAX_SEQS, 16, 1),
        input_len=LengthDist(LLAMA2_ISL, 1.0),
        output_len=LengthDist(LLAMA2_OSL, 0.8),
        ttft_p99_s=2.0,
        tpot_p99_s=0.2,
        n_requests=SERVER_REQUESTS,
    )
    per_gpu = res.output_tokens_per_s / res.chips
    return check_result(
        "h100-llama2-70b-server",
        "H100 tokens/s per GPU, Llama-2-70B, MLPerf Server (p99 TTFT 2 s, TPOT 200 ms)",
        2701.0,
        "tokens/s",
        "https://github.com/mlcommons/inference_results_v4.1/tree/main/closed/NVIDIA/results/"
        "DGX-H100_H100-SXM-80GBx8_TRT/llama2-70b-99/Server",
        per_gpu,
        0.20,
        f"highest Poisson rate ({res.rate_per_s:.1f} req/s per TP{LLAMA2_TP} replica) whose "
        f"exact replay of {SERVER_REQUESTS:,} requests meets both p99 bounds, bracketing search "
        f"to 2% ({len(res.search.evaluations)} replays); FP8 weights+KV, "
        f"max_num_seqs {LLAMA2_MAX_SEQS}, token budget {SERVER_TOKEN_BUDGET}; lengths lognormal "
        f"(input mean {LLAMA2_ISL:.0f} est., cv 1.0; output mean {LLAMA2_OSL}, cv 0.8; "
        f"clipped to 1..1024)",
    )


PLATFORM_SLO_S = 0.100  # P99 100 ms (ISCA'25 §6 production SLO)
PLATFORM_SPAN_S = 0.5  # simulated seconds per replay at the judged rate (keeps validate fast)


def _platform_figures(cat: Catalog) -> tuple[list[float], list[float], str]:
    """Per-server throughput and perf/W ratios (MTIA 2i / MTIA 1) by capacity search."""
    thr, ppw, detail = [], [], []
    for name in CHIP_CHECK_MODELS:
        new, old = (
            capacity(
                name,
                chip,
                ServiceSLO(latency_ns=round(PLATFORM_SLO_S * 1e9)),
                hosts=1,
                min_span_s=PLATFORM_SPAN_S,
                rel_tol=0.05,
                catalog=cat,
            )
            for chip in ("mtia-2i", "mtia-1")
        )
        thr.append(new.per_host / old.per_host)
        ppw.append(new.perf_per_w / old.perf_per_w)
        detail.append(f"{name} {thr[-1]:.2f}x/{ppw[-1]:.2f}x")
    return thr, ppw, ", ".join(detail)


def check_platform(cat: Catalog) -> list[CheckResult]:
    thr, ppw, detail = _platform_figures(cat)
    method = (
        "geometric mean over " + ", ".join(CHIP_CHECK_MODELS) + " of `capacity` (exact replay "
        "+ bracketing search, P99 <= 100 ms) of one server each: MTIA 2i = one Grand Teton "
        "host (24 chips, 2 x 96 cores), MTIA 1 = one Yosemite V3 server (12 chips); perf/W "
        "counts accelerators (replayed energy) plus host power; per model "
        f"throughput/perf-per-W ratios: {detail}"
    )
    blog = "https://ai.meta.com/blog/next-generation-meta-training-inference-accelerator-AI-MTIA/"
    geo = [float(np.exp(np.mean(np.log(x)))) for x in (thr, ppw)]
    return [
        check_result(
            "mtia2i-vs-mtia1-platform-throughput",
            "MTIA 2i / MTIA 1 model-serving throughput per server (platform level)",
            6.0,
            "x",
            blog,
            geo[0],
            0.20,
            method,
        ),
        check_result(
            "mtia2i-vs-mtia1-platform-perf-per-watt",
            "MTIA 2i / MTIA 1 perf/W per server (platform level)",
            1.5,
            "x",
            blog,
            geo[1],
            0.20,
            method,
        ),
    ]


def run_all(cat: Catalog) -> list[CheckResult]:
    """Every validation check: cost model first, then replay-based."""
    return [*run_validation(cat), check_h100_llama2_server(cat), *check_platform(cat)]
