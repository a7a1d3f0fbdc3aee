"""The cost model's per-accelerator table of each generation (`demo --estimate`)."""

from __future__ import annotations

import click

from mtia_cluster.catalog import Catalog, Host, load_catalog
from mtia_cluster.cli._common import echo_table
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.estimators import llm_offline_throughput, rr_best_throughput
from mtia_cluster.workloads import LLMModel, RRModel

DEMO_CHIPS = ("mtia-1", "mtia-2i", "mtia-400", "h100", "b200")
DEMO_RR = ("lc1", "hc1", "dlrm-dcnv2")
DEMO_LLM = (("llama-3.1-8b", 1), ("llama-3.1-70b", 2))
RR_LATENCY_BUDGET_S = 0.050  # half of a P99 100 ms SLO for one batch (ISCA'25 §6 SLO)


def _host_for(cat: Catalog, chip: str) -> Host | None:
    return next((cat.host(p.host) for p in cat.platforms.values() if p.chip == chip), None)


def estimate_rows() -> list[dict[str, object]]:
    """Per-accelerator throughput and perf/W of each generation (cost model)."""
    cat = load_catalog()
    rows = []
    for model_name in DEMO_RR:
        model = cat.model(model_name)
        assert isinstance(model, RRModel)
        for chip_name in DEMO_CHIPS:
            chip = cat.chip(chip_name)
            s = rr_best_throughput(chip, model, _host_for(cat, chip_name), RR_LATENCY_BUDGET_S)
            rows.append(
                {
                    "workload": model_name,
                    "chip": chip_name,
                    "batch": s.batch,
                    "throughput_per_s": s.items_per_s_per_chip,
                    "unit": "items/s",
                    "latency_ms": s.latency_s * 1e3,
                    "bound": s.bound,
                    "power_w": s.power_w,
                    "per_watt": s.items_per_s_per_chip / s.power_w,
                }
            )
    for model_name, tp in DEMO_LLM:
        model = cat.model(model_name)
        assert isinstance(model, LLMModel)
        for chip_name in DEMO_CHIPS:
            chip = cat.chip(chip_name)
            if "fp8" not in chip.gemm_dense_flops and "bf16" not in chip.gemm_dense_flops:
                continue
            dtype = "fp8" if "fp8" in chip.gemm_dense_flops else "bf16"
            try:
                it = llm_iteration_model(chip, model, tp=tp, dtype=dtype)
            except UserError:  # a replica that does not fit on this chip is skipped
                continue
            est = llm_offline_throughput(it, 1024, 256, max_num_seqs=256)
            per_chip = est.output_tokens_per_s / it.chips
            power = float(chip.power_w(1.0))
            rows.append(
                {
                    "workload": f"{model_name} tp{tp} {dtype}",
                    "chip": chip_name,
                    "batch": est.batch,
                    "throughput_per_s": per_chip,
                    "unit": "tokens/s",
                    "latency_ms": est.iteration_s * 1e3,
                    "bound": est.bound,
                    "power_w": power,
                    "per_watt": per_chip / power,
                }
            )
    return rows


def echo_estimate_table(rows: list[dict[str, object]]) -> None:
    click.echo(
        "mtia-cluster demo: best steady state per accelerator (cost model; R&R batches "
        "within 50 ms, LLM offline 1024 in / 256 out)\n"
    )
    echo_table(
        ["workload", "chip", "batch", "per accel", "unit", "batch ms", "bound", "W", "per W"],
        [
            [
                r["workload"],
                r["chip"],
                r["batch"],
                r["throughput_per_s"],
                r["unit"],
                r["latency_ms"],
                r["bound"],
                r["power_w"],
                r["per_watt"],
            ]
            for r in rows
        ],
    )
