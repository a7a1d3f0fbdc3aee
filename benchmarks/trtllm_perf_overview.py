"""The cost model against TensorRT-LLM's own published H100 FP8 throughputs (not a check).

Not a speed benchmark: it prints the comparison docs/validation.md quotes ("FP8 step time:
what was searched") as independent evidence on the FP8 step time at large batch, away from
the MLPerf checks. Tables of three versions of NVIDIA/TensorRT-LLM's docs/source/performance/
perf-overview.md, all `all requests queued at once, fixed ISL/OSL` offline runs on H100 SXM
80GB with FP8 weights and FP8 KV cache, metric total output tokens/s of the TP-GPU system:

* 2025, PyTorch backend (``ROWS``): @ 00f37686aa854010d68bcbd0f4ab000221541ca6, "Llama 3.3
  70B" table, column "H100 TP2 (FP8)": `trtllm-bench throughput --backend pytorch`, CUDA
  graphs, ModelOpt checkpoint nvidia/Llama-3.3-70B-Instruct-FP8 (Llama 3.1 70B's
  architecture, configs/models/llama-3.1-70b.yaml). trtllm-bench picks its own max batch size
  and token budget; the runs here use 2,048 sequences and 8,192 tokens (TensorRT-LLM's
  default max_num_tokens).
  ``ROWS_MAVERICK``: the same page's MoE table "Llama 4 Maverick", H100 TP8 (layout there).
* July 2024, TensorRT-engine runtime (``ROWS_V011``): the page "generated using version
  0.11.0" (https://github.com/NVIDIA/TensorRT-LLM/blob/v0.11.0/docs/source/performance/
  perf-overview.md), the MLPerf v4.1 submissions' era. Engines built with `trtllm-build
  --use_fused_mlp --gpt_attention_plugin float16 --reduce_fusion disable
  --use_paged_context_fmha enable --multiple_profiles enable` and run by
  `gptManagerBenchmark --type IFB --scheduler_policy guaranteed_no_evict
  --kv_cache_free_gpu_mem_fraction 0.99 --enable_chunked_context`; `$max_num_tokens` and
  `$max_batch_size` are published per model and TP ("Network Configuration Files and
  Settings"), and replayed as published. H100 FP8 rows with TP <= 4: Llama-2-70B TP2 and
  TP4, Mixtral 8x7B TP2.
* October 2024, TensorRT-engine runtime (``ROWS_V013``): the page "generated using version
  0.13.0" (https://raw.githubusercontent.com/NVIDIA/TensorRT-LLM/v0.13.0/docs/source/
  performance/perf-overview.md), `trtllm-bench build --quantization FP8 --dataset` (engine
  settings tuned by its heuristics, not published per row) and `trtllm-bench throughput`
  (guaranteed_no_evict, KV 99% of free memory). H100 FP8 TP2 rows of Llama-2-70B and Mixtral
  8x7B; replayed with the doc's printed example runtime, 4,096 sequences and 8,192 tokens.

Each row replays the doc's `$num_requests` through `llm_offline_replay` (all at t = 0,
guaranteed_no_evict admission), FP8 weights and KV. The KV cache is sized by the catalog's
rule (0.9 of capacity minus weights and a 1.5 GB reserve; the docs use 0.95-0.99 of *free*
memory); `fit` is how many full reservations (ISL + OSL) that cache holds, capped by the max
batch: below the cap, the row is KV-bound and its throughput depends on the cache size.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/trtllm_perf_overview.py
"""

from __future__ import annotations

import time

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.planning.llm_server import LengthDist, llm_offline_replay
from mtia_cluster.workloads import LLMModel

# (ISL, OSL, requests, published total output tokens/s of the TP2 system)
ROWS = [
    (128, 128, 30_000, 6_378),
    (128, 2048, 3_000, 6_651),
    (500, 2000, 3_000, 5_222),
    (1000, 1000, 3_000, 4_205),
    (2048, 128, 3_000, 762),
    (2048, 2048, 1_500, 3_082),
]
TP = 2

# (model, TP, ISL, OSL, requests, published total output tokens/s, max_num_tokens,
#  max_batch_size); v0.11.0: settings as published per model and TP
ROWS_V011 = [
    ("llama-2-70b", 2, 128, 128, 30_000, 6_502.44, 2048, 2048),
    ("llama-2-70b", 2, 2048, 128, 3_000, 747.14, 2048, 2048),
    ("llama-2-70b", 2, 128, 2048, 3_000, 5_267.56, 2048, 2048),
    ("llama-2-70b", 2, 2048, 2048, 1_500, 2_457.73, 2048, 2048),
    ("llama-2-70b", 4, 128, 128, 30_000, 10_448.46, 8192, 4096),
    ("llama-2-70b", 4, 2048, 128, 3_000, 1_231.26, 8192, 4096),
    ("llama-2-70b", 4, 128, 2048, 3_000, 9_202.42, 8192, 4096),
    ("llama-2-70b", 4, 2048, 2048, 1_500, 4_586.99, 8192, 4096),
    ("mixtral-8x7b", 2, 128, 128, 30_000, 24_770.44, 3072, 2048),
    ("mixtral-8x7b", 2, 2048, 128, 3_000, 2_973.11, 3072, 2048),
    ("mixtral-8x7b", 2, 128, 2048, 3_000, 22_120.85, 3072, 2048),
    ("mixtral-8x7b", 2, 2048, 2048, 1_500, 11_486.66, 3072, 2048),
]
# v0.13.0: trtllm-bench's own settings (not published per row); the doc's example runtime
ROWS_V013 = [
    ("llama-2-70b", 2, 128, 128, 30_000, 6_432.82, 8192, 4096),
    ("llama-2-70b", 2, 128, 2048, 3_000, 5_775.34, 8192, 4096),
    ("llama-2-70b", 2, 128, 4096, 1_500, 3_354.60, 8192, 4096),
    ("llama-2-70b", 2, 2048, 128, 3_000, 742.17, 8192, 4096),
    ("llama-2-70b", 2, 5000, 500, 1_500, 885.67, 8192, 4096),
    ("llama-2-70b", 2, 500, 2000, 3_000, 4_462.98, 8192, 4096),
    ("llama-2-70b", 2, 1000, 1000, 3_000, 3_958.45, 8192, 4096),
    ("llama-2-70b", 2, 2048, 2048, 1_500, 2_551.21, 8192, 4096),
    ("mixtral-8x7b", 2, 128, 128, 30_000, 24_572.90, 8192, 4096),
    ("mixtral-8x7b", 2, 128, 2048, 3_000, 20_938.80, 8192, 4096),
    ("mixtral-8x7b", 2, 2048, 128, 3_000, 2_894.09, 8192, 4096),
    ("mixtral-8x7b", 2, 5000, 500, 1_500, 3_630.24, 8192, 4096),
    ("mixtral-8x7b", 2, 500, 2000, 3_000, 16_886.30, 8192, 4096),
    ("mixtral-8x7b", 2, 1000, 1000, 3_000, 14_154.95, 8192, 4096),
    ("mixtral-8x7b", 2, 2048, 2048, 1_500, 10_448.79, 8192, 4096),
    ("mixtral-8x7b", 2, 20000, 2000, 1_000, 1_583.86, 8192, 4096),
]
# 2025 MoE (same doc and commit as ROWS): "Llama 4 Maverick" table, column "H100 TP8 (FP8)",
# `trtllm-bench --tp 8 --ep $ep_size ... --backend pytorch` with enable_attention_dp; ep_size is
# not published: replayed as attention data-parallel over 8 groups with experts split over
# them (tp=1, ep=8, perf/moe.py), 2,048 sequences, 8,192 tokens. (ISL, OSL, requests, published)
ROWS_MAVERICK = [
    (128, 2048, 3_000, 10_829),
    (128, 4096, 1_500, 6_744),
    (500, 2000, 3_000, 10_108),
    (1000, 1000, 3_000, 9_677),
    (1000, 2000, 1_500, 9_151),
    (2048, 2048, 1_500, 6_916),
    (5000, 500, 1_500, 3_457),
]
HEADER = (
    "model            TP  ISL/OSL     requests  fit  published tok/s  simulated tok/s  "
    "sim/pub  wall s"
)


def replay(
    cat: Catalog,
    name: str,
    tp: int,
    row: tuple[int, int, int, float],
    limits: ReplicaLimits,
    ep: int = 1,
) -> str:
    """One row: replay its requests on one ``tp x ep`` replica, return the printed line."""
    isl, osl, n, published = row
    model = cat.model(name)
    assert isinstance(model, LLMModel)
    h100 = cat.chip("h100")
    t0 = time.perf_counter()
    off = llm_offline_replay(
        h100,
        model,
        tp=tp,
        dtype="fp8",
        kv_dtype="fp8",
        limits=limits,
        input_len=LengthDist(isl, 0.0, hi=isl),
        output_len=LengthDist(osl, 0.0, hi=osl),
        n_requests=n,
        ep=ep,
    )
    it = llm_iteration_model(h100, model, tp=tp, dtype="fp8", kv_dtype="fp8", ep=ep)
    kv = it.kv_capacity_tokens
    fit = min(limits.max_num_seqs, kv // (isl + osl))
    sim = off.output_tokens_per_s
    return (
        f"{name:<16} {tp * ep:>2} {isl:>5}/{osl:<5} {n:>8} {fit:>4}  {published:>15,.0f}  "
        f"{sim:>15,.0f}  {sim / published:>7.3f}  {time.perf_counter() - t0:6.1f}"
    )


def main() -> None:
    cat = load_catalog()
    print("2025, PyTorch backend (Llama 3.3 70B = llama-3.1-70b), 2,048 seqs, 8,192 tokens")
    print(HEADER)
    limits = ReplicaLimits(8192, 2048, 16, 1, False, "guaranteed_no_evict")
    for isl, osl, n, published in ROWS:
        print(replay(cat, "llama-3.1-70b", TP, (isl, osl, n, published), limits), flush=True)
    for title, rows in (
        ("v0.11.0 (July 2024), TensorRT engine, settings as published", ROWS_V011),
        ("v0.13.0 (October 2024), TensorRT engine, 4,096 seqs, 8,192 tokens", ROWS_V013),
    ):
        print(f"\n{title}\n{HEADER}")
        for name, tp, isl, osl, n, published, tokens, seqs in rows:
            limits = ReplicaLimits(tokens, seqs, 16, 1, False, "guaranteed_no_evict")
            print(replay(cat, name, tp, (isl, osl, n, published), limits), flush=True)
    print("\n2025, PyTorch backend, MoE: Llama 4 Maverick, H100 TP8 (attention DP, ep=8)")
    print(HEADER)
    limits = ReplicaLimits(8192, 2048, 16, 1, False, "guaranteed_no_evict")
    for row in ROWS_MAVERICK:
        print(replay(cat, "llama-4-maverick", 1, row, limits, ep=8), flush=True)


if __name__ == "__main__":
    main()
