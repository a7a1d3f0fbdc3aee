"""KV admission policy vs the MLPerf Llama-2-70B H100 checks (docs/validation.md).

Runs the `validate` system (one TP2 FP8 H100 replica with the submission's Server limits,
max_num_seqs 1,024, budget 4,096, KV block 64, no chunked prefill, KV cache 0.90 of free
memory -- here for Offline too --, the OpenOrca set's lengths, the submission's 2,400 s runs)
under each admission setting and prints Offline (LoadGen figure and steady capacity), Server
and their ratio, tokens/s per GPU:

* ``max_utilization`` (greedy admission, recompute preemption; what `validate` runs: the
  submission's harness default, docs/validation.md);
* ``guaranteed_no_evict`` reserving each request's own output length;
* ``guaranteed_no_evict`` reserving ``max_tokens`` 1,024 output tokens per request (the
  MLCommons reference SUT's ``max_new_tokens``).

Usage::

    .venv/bin/python benchmarks/bench_llm_admission.py
"""

from __future__ import annotations

import dataclasses
import time

from mtia_cluster.catalog import load_catalog
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.planning.validation import LLAMA2, _bench_args, run_benchmark

SETTINGS = (
    ("max_utilization", None),
    ("guaranteed_no_evict", None),
    ("guaranteed_no_evict", 1024),
)


def main() -> None:
    cat = load_catalog()
    base = _bench_args(cat, LLAMA2)
    print("| policy | max_tokens | offline | offline capacity | server | server/capacity |")
    print("|---|---|---|---|---|---|")
    for policy, max_tokens in SETTINGS:
        t0 = time.perf_counter()
        limits: ReplicaLimits = base["limits"]
        limits = dataclasses.replace(limits, capacity_policy=policy, max_tokens=max_tokens)
        off, srv = run_benchmark(cat, LLAMA2, limits)
        per = off.chips
        print(
            f"| {policy} | {max_tokens or 'output'} | {off.output_tokens_per_s / per:,.0f} | "
            f"{off.steady_tokens_per_s / per:,.0f} | {srv.output_tokens_per_s / per:,.0f} | "
            f"{srv.output_tokens_per_s / off.steady_tokens_per_s:.3f} |"
            f"  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
