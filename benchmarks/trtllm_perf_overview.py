"""The cost model against TensorRT-LLM's own published H100 FP8 throughputs (not a check).

Not a speed benchmark: it prints the comparison docs/validation.md quotes ("FP8 step time:
what was searched") as independent evidence on the FP8 step time at large batch, away from
the MLPerf checks. Tables of three versions of NVIDIA/TensorRT-LLM's docs/source/performance/
perf-overview.md, all `all requests queued at once, fixed ISL/OSL` offline runs on H100 SXM
80GB with FP8 weights and FP8 KV cache, metric total output tokens/s of the TP-GPU system:

* 2025, PyTorch backend (``ROWS_2025``): @ 00f37686aa854010d68bcbd0f4ab000221541ca6, "Llama 3.3
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

``--heldout`` replays the held-out GPUs instead (``mtia_cluster/planning/trtllm_heldout.py``:
the same pages' H200, A100 FP16, H100 FP16 / TP1 / TP8, B200 and GB200 rows; never fitted
on, not checks): per set, rows run, MAPE and mean simulated / published under the catalog's
KV rule and under the page's own TensorRT-LLM rule (``kv_cache_free_gpu_mem_fraction`` of
free memory), then the same rows on two GPUs (H200 / H100, H100 / A100) as published and
simulated ratios; ``--rows`` adds every row.

The tables live in ``mtia_cluster/planning/trtllm_overview.py``. ``--fit-moe`` runs the
MoE expert-GEMM fit there (``moe.expert_gemm_peak_scale``: fitted on the v0.13.0 Mixtral
rows, v0.11.0 Mixtral and 2025 Maverick held out) and prints the fitted number and the MAPE
of every MoE set at scale 1 and at the fitted scale.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/trtllm_perf_overview.py [--fit-moe]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/trtllm_perf_overview.py --heldout [--rows]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.planning.trtllm_heldout import (
    Replayed,
    heldout_sets,
    rank_pairs,
    replay_set,
    set_mape,
)
from mtia_cluster.planning.trtllm_overview import (
    MOE_FIT_ROWS,
    ROWS_2025,
    ROWS_MAVERICK,
    ROWS_V011,
    ROWS_V013,
    Row,
    fit_expert_scale,
    mape,
    moe_rows,
    ratios,
    replay_row,
)

HEADER = (
    "model            TP  ISL/OSL     requests  fit  published tok/s  simulated tok/s  "
    "sim/pub  wall s"
)
TABLES = (
    ("2025, PyTorch backend (Llama 3.3 70B = llama-3.1-70b), 2,048 seqs, 8,192 tokens", ROWS_2025),
    ("v0.11.0 (July 2024), TensorRT engine, settings as published", ROWS_V011),
    ("v0.13.0 (October 2024), TensorRT engine, 4,096 seqs, 8,192 tokens", ROWS_V013),
    ("2025, PyTorch backend, MoE: Llama 4 Maverick, H100 TP8 (attention DP, ep=8)", ROWS_MAVERICK),
)


def replay(cat: Catalog, row: Row) -> str:
    """One row: replay its requests on one ``tp x ep`` replica, return the printed line."""
    t0 = time.perf_counter()
    sim, fit = replay_row(cat, row)
    return (
        f"{row.model:<16} {row.tp * row.ep:>2} {row.isl:>5}/{row.osl:<5} {row.requests:>8} "
        f"{fit:>4}  {row.published:>15,.0f}  {sim:>15,.0f}  {sim / row.published:>7.3f}  "
        f"{time.perf_counter() - t0:6.1f}"
    )


def fit_moe(cat: Catalog) -> None:
    """Fit ``moe.expert_gemm_peak_scale`` and print it with fit and held-out MAPEs."""
    t0 = time.perf_counter()
    fit = fit_expert_scale(cat)
    print(
        f"moe.expert_gemm_peak_scale = {fit.scale:.4f}  (fit wall {time.perf_counter() - t0:.1f} s)"
    )
    sets = (
        ("v0.13.0 Mixtral TP2 (fit)", MOE_FIT_ROWS),
        ("v0.11.0 Mixtral TP2 (held out)", moe_rows(ROWS_V011)),
        ("2025 Maverick TP8 (held out)", ROWS_MAVERICK),
    )
    print(f"{'set':<32} {'rows':>4}  {'MAPE at 1':>9}  {'MAPE fitted':>11}  mean sim/pub fitted")
    for name, rows in sets:
        one, fitted = ratios(cat, rows, 1.0), ratios(cat, rows, fit.scale)
        print(
            f"{name:<32} {len(rows):>4}  {mape(one):>9.1%}  {mape(fitted):>11.1%}  "
            f"{fitted.mean():.3f}  ({' '.join(f'{x:.3f}' for x in fitted)})"
        )


def _pct(x: float) -> str:
    """A MAPE, or "n/a" when no row of the set could run under that rule."""
    return "n/a" if np.isnan(x) else f"{x:.1%}"


def _ratios(done: tuple[Replayed, ...], rule: str) -> list[float]:
    return [getattr(x, rule)[0] / x.row.published for x in done]


def heldout(cat: Catalog, rows: bool) -> None:
    """Replay every held-out set; print MAPEs per set, then GPU-pair ratios."""
    print(
        f"{'held-out set':<40} {'run/rows':>8}  {'catalog KV: MAPE':>16} {'mean':>6}  "
        f"{'TRT-LLM KV: MAPE':>16} {'mean':>6}  wall s  (run: rows run, catalog|TRT-LLM rule)"
    )
    every: list[Replayed] = []
    for s in heldout_sets():
        t0 = time.perf_counter()
        done = replay_set(cat, s)
        every += done
        (m0, a0, n0), (m1, a1, n1) = (
            set_mape(_ratios(done, "catalog")),
            set_mape(_ratios(done, "trtllm")),
        )
        print(
            f"{s.title:<40} {n0:>2}|{n1:>2}/{len(done):<2}  {_pct(m0):>16} {a0:>6.3f}  "
            f"{_pct(m1):>16} {a1:>6.3f}  {time.perf_counter() - t0:6.1f}",
            flush=True,
        )
        for x in done if rows else ():
            print(
                f"    {x.row.isl:>5}/{x.row.osl:<5} pub {x.row.published:>9,.0f}  catalog "
                f"{x.catalog[0]:>9,.0f} ({x.catalog[0] / x.row.published:.3f}, fit "
                f"{x.catalog[1]})  TRT-LLM {x.trtllm[0]:>9,.0f} "
                f"({x.trtllm[0] / x.row.published:.3f}, fit {x.trtllm[1]})"
            )
    for a, b in (("h200", "h100"), ("h100", "a100")):
        pairs = rank_pairs(every, a, b)
        agree = sum((p.published >= 1) == (p.simulated >= 1) for p in pairs)
        err = np.array([p.simulated / p.published for p in pairs])
        print(
            f"\n{a} / {b}, same rows ({len(pairs)}): same order in {agree}; simulated ratio / "
            f"published ratio: mean {err.mean():.3f}, range {err.min():.3f}-{err.max():.3f}"
        )
        for p in pairs if rows else ():
            print(f"    {p.key}: published {p.published:.3f}  simulated {p.simulated:.3f}")


def main() -> None:
    cat = load_catalog()
    if "--fit-moe" in sys.argv[1:]:
        fit_moe(cat)
        return
    if "--heldout" in sys.argv[1:]:
        heldout(cat, "--rows" in sys.argv[1:])
        return
    for i, (title, rows) in enumerate(TABLES):
        print(f"{chr(10) if i else ''}{title}\n{HEADER}")
        for row in rows:
            print(replay(cat, row), flush=True)


if __name__ == "__main__":
    main()
