"""The cost model against TensorRT-LLM's own published H100 FP8 throughputs (not a check).

Not a speed benchmark: it prints the comparison docs/validation.md quotes ("FP8 step time:
what was searched") as independent evidence on the FP8 step time at large batch, away from
the MLPerf checks. Source: NVIDIA/TensorRT-LLM @ 00f37686aa854010d68bcbd0f4ab000221541ca6,
docs/source/performance/perf-overview.md, "Llama 3.3 70B" table, column "H100 TP2 (FP8)":
`trtllm-bench throughput` (all requests queued at once, fixed ISL/OSL, ModelOpt FP8
checkpoint nvidia/Llama-3.3-70B-Instruct-FP8, PyTorch backend, CUDA graphs), metric "Total
Output Throughput (tokens/sec)" of the 2-GPU system. Llama 3.3 70B has Llama 3.1 70B's
architecture (configs/models/llama-3.1-70b.yaml).

Each row replays the same number of requests as the doc (its `$num_requests` table) through
`llm_offline_replay` (all at t = 0, TensorRT-LLM's default guaranteed_no_evict admission),
FP8 weights and KV cache. trtllm-bench picks its own max batch size and token budget; the
runs here use 2,048 sequences and 8,192 tokens (TensorRT-LLM's default max_num_tokens) and
the KV cache is sized by the catalog's rule (the doc often uses 0.95 of free memory).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/trtllm_perf_overview.py
"""

from __future__ import annotations

import time

from mtia_cluster.catalog import load_catalog
from mtia_cluster.engine.llm.limits import ReplicaLimits
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


def main() -> None:
    cat = load_catalog()
    model = cat.model("llama-3.1-70b")
    assert isinstance(model, LLMModel)
    limits = ReplicaLimits(8192, 2048, 16, 1, False, "guaranteed_no_evict")
    print("ISL/OSL     requests  published tok/s  simulated tok/s  sim/pub  wall s")
    for isl, osl, n, published in ROWS:
        t0 = time.perf_counter()
        off = llm_offline_replay(
            cat.chip("h100"),
            model,
            tp=TP,
            dtype="fp8",
            kv_dtype="fp8",
            limits=limits,
            input_len=LengthDist(isl, 0.0, hi=isl),
            output_len=LengthDist(osl, 0.0, hi=osl),
            n_requests=n,
        )
        sim = off.output_tokens_per_s
        print(
            f"{isl:>5}/{osl:<5} {n:>8}  {published:>15,}  {sim:>15,.0f}  "
            f"{sim / published:>7.3f}  {time.perf_counter() - t0:6.1f}"
        )


if __name__ == "__main__":
    main()
