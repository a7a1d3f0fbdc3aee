"""Expert-parallel sweep: DeepSeek-V3 replicas of a fixed size, split tp x ep (issue #15).

For each split of ``--chips`` accelerators into ``tp x ep`` (ep dividing the 256 routed
experts; the replica must hold its weights: non-expert weights are replicated per EP group),
prints the LoadGen-way Offline throughput of one replica (``--requests`` queries at t = 0 through
the exact scheduler, TensorRT-LLM's guaranteed_no_evict admission) and the iteration-time
breakdown of a 256-sequence decode step (context 2,048 each): routed-expert GEMMs of the
busiest group, the all-to-all dispatch + combine, and the rest. ``--skew`` sets the Zipf
exponent of expert popularity (perf/moe.py; 0 = uniform). Usage::

    .venv/bin/python benchmarks/bench_ep_sweep.py [--chip h200] [--chips 8] [--skew 0]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.moe import moe_all_to_all_s, moe_gemm_s
from mtia_cluster.planning.llm_server import LengthDist, llm_offline_replay
from mtia_cluster.workloads import LLMModel

# ISL/OSL uniform-ish around 1,000 tokens, as the InferenceMax DeepSeek runs
# (hardware-workload-facts: ISL and OSL uniform in [819, 1024]); lognormal cv 0.1 here.
LENGTHS = LengthDist(920.0, 0.1, 819, 1024)
DECODE_BATCH, DECODE_CONTEXT = 256, 2048


def _splits(chips: int, experts: int) -> list[tuple[int, int]]:
    return [
        (chips // ep, ep) for ep in range(1, chips + 1) if chips % ep == 0 and experts % ep == 0
    ]


def _row(chip_name: str, model: LLMModel, tp: int, ep: int, args: argparse.Namespace) -> str:
    cat = load_catalog()
    chip = cat.chip(chip_name)
    try:
        it = llm_iteration_model(chip, model, tp=tp, ep=ep, dtype="fp8", kv_dtype="fp8")
    except UserError as e:
        return f"| {tp} | {ep} | does not fit ({e.reason}) | | | | |"
    n = np.array([float(DECODE_BATCH)])
    total = float(it.time_s(0, n, n * DECODE_CONTEXT)[0])
    layers = model.moe_layers
    experts = layers * float(moe_gemm_s(n, it.moe_layer, it.gemm_env)[0])
    up = tp * ep <= chip.scale_up_domain
    link = chip.scale_up_bytes_per_s if up else chip.scale_out_bytes_per_s
    coll = chip.op_params.send_recv_up if up else chip.op_params.send_recv_out
    a2a = layers * float(moe_all_to_all_s(n, it.moe_layer, link, coll)[0]) if ep > 1 else 0.0
    limits = ReplicaLimits(8192, 1024, 16, 1, False, "guaranteed_no_evict")
    off = llm_offline_replay(
        chip,
        model,
        tp=tp,
        ep=ep,
        dtype="fp8",
        kv_dtype="fp8",
        limits=limits,
        input_len=LENGTHS,
        output_len=LENGTHS,
        n_requests=args.requests,
    )
    return (
        f"| {tp} | {ep} | {it.kv_capacity_tokens:,} | {total * 1e3:.1f} | "
        f"{experts * 1e3:.1f} | {a2a * 1e3:.1f} | {off.output_tokens_per_s / off.chips:,.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chip", default="h200")
    ap.add_argument("--chips", type=int, default=8)
    ap.add_argument("--skew", type=float, default=0.0)
    ap.add_argument("--requests", type=int, default=4096)
    args = ap.parse_args()
    model = load_catalog().model("deepseek-v3")
    assert isinstance(model, LLMModel) and model.moe is not None
    experts = model.moe.experts
    model = dataclasses.replace(model, moe=dataclasses.replace(model.moe, router_skew=args.skew))
    print(f"DeepSeek-V3 on {args.chips} x {args.chip}, FP8, router skew {args.skew:g}")
    print(
        "| tp | ep | KV capacity (tokens) | decode step (ms) | experts (ms) | all-to-all (ms) "
        "| offline tok/s per chip |"
    )
    print("|---|---|---|---|---|---|---|")
    for tp, ep in _splits(args.chips, experts):
        print(_row(args.chip, model, tp, ep, args), flush=True)


if __name__ == "__main__":
    main()
