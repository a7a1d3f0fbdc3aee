"""The built-in validation suite: the cost model against published results.

Parameters come from specs, published efficiency facts and documented fits to operator
measurements; the checks below are never used to tune anything. Tolerances are the
acceptance bounds of issue #12. A check that fails stays visible as
failing, and docs/validation.md explains the gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.perf.estimators import rr_best_throughput
from mtia_cluster.workloads.rr import RRModel

# The four representative R&R models for the chip-level MTIA 2i vs MTIA 1 check: the two ends
# of each complexity class of ISCA'25 Fig. 6 (the blog's "four key models" are not public).
CHIP_CHECK_MODELS = ("lc1", "lc5", "hc1", "hc3")
DLRM_PAIRS_PER_SAMPLE = 270.0  # mean of the MLPerf DLRMv2 query-size distribution (facts §4.3)
DLRM_SERVER_BOUND_S = 0.060  # p99 bound; half of it is allowed for one batch (queueing margin)
# Per-GPU batches (user-item pairs) of NVIDIA's H100 submissions: Server 51,200 is the model's
# max_batch (v4.1 config, configs/models/dlrm-dcnv2.yaml); Offline batches 600,000 (the v4.0
# H100_SXM_80GBx1/x8 Offline config, the newest NVIDIA Offline config in our sources; v4.1
# configs derived from NVIDIA's, e.g. GigaComputing's H200, keep 600,000).
DLRM_OFFLINE_BATCH = 600_000
DLRM_OFFLINE_CONFIG = (
    "https://github.com/mlcommons/inference_results_v4.0/blob/main/closed/NVIDIA/configs/"
    "dlrm-v2/Offline/__init__.py"
)
# NVIDIA runs every dense layer and the embeddings in INT8 for the 99% target (its dlrm-v2
# GPUBaseConfig; the 99.9% variants switch the interaction to FP16). We model FP16, which is
# neither the submission's precision nor the reference's (the MLCommons reference backend,
# recommendation/dlrm_v2/pytorch/python/backend_pytorch_native.py, builds the model in torch's
# default FP32; facts §4.1: a 97.31 GB FP32 checkpoint): it is the one dtype whose H100 peak
# and `efficiency.gemm` (a BF16 measurement, ISCA'26) share a basis. At INT8 the same roofline
# is +113% (Server) / +92% (Offline): docs/validation.md, "MTIA and DLRM-v2 checks: audit".
DLRM_PRECISION_NOTE = "FP16 (the submission runs INT8; docs/validation.md)"


@dataclass(frozen=True)
class CheckResult:
    id: str
    description: str
    published: float
    unit: str
    source: str
    simulated: float
    rel_error: float
    tolerance: float
    passed: bool
    method: str
    bound: str = "two-sided"  # "two-sided": |rel_error| <= tolerance; "at-most": rel <= tol

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_result(
    id_: str,
    description: str,
    published: float,
    unit: str,
    source: str,
    simulated: float,
    tolerance: float,
    method: str,
    bound: str = "two-sided",
) -> CheckResult:
    """A check's verdict. "at-most" checks (MAPE bounds, server <= offline) pass when the
    simulated figure does not exceed `published` by more than `tolerance`."""
    rel = simulated / published - 1.0
    ok = rel <= tolerance if bound == "at-most" else abs(rel) <= tolerance
    return CheckResult(
        id_,
        description,
        published,
        unit,
        source,
        simulated,
        rel,
        tolerance,
        bool(ok),
        method,
        bound,
    )


def _platform_host(cat: Catalog, chip: str):
    for p in cat.platforms.values():
        if p.chip == chip:
            return cat.host(p.host)
    return None


def check_mtia2i_vs_mtia1(cat: Catalog) -> CheckResult:
    ratios = []
    for name in CHIP_CHECK_MODELS:
        model = cat.model(name)
        assert isinstance(model, RRModel)
        new = rr_best_throughput(cat.chip("mtia-2i"), model, _platform_host(cat, "mtia-2i"))
        old = rr_best_throughput(cat.chip("mtia-1"), model, _platform_host(cat, "mtia-1"))
        ratios.append(new.items_per_s_per_chip / old.items_per_s_per_chip)
    geo = float(np.exp(np.mean(np.log(ratios))))
    detail = ", ".join(f"{m} {r:.2f}x" for m, r in zip(CHIP_CHECK_MODELS, ratios, strict=True))
    return check_result(
        "mtia2i-vs-mtia1-chip",
        "MTIA 2i / MTIA 1 per-chip R&R throughput",
        3.0,
        "x",
        "https://ai.meta.com/blog/next-generation-meta-training-inference-accelerator-AI-MTIA/",
        geo,
        0.15,
        f"geometric mean over {', '.join(CHIP_CHECK_MODELS)} of the best items/s per chip at "
        f"batch <= max_batch, each chip fed by its own host ({detail})",
    )


def check_h100_dlrm_server(cat: Catalog) -> CheckResult:
    model = cat.model("dlrm-dcnv2")
    assert isinstance(model, RRModel)
    best = rr_best_throughput(
        cat.chip("h100"),
        model,
        _platform_host(cat, "h100"),
        latency_budget_s=DLRM_SERVER_BOUND_S / 2,
    )
    samples = best.items_per_s_per_chip / DLRM_PAIRS_PER_SAMPLE
    return check_result(
        "h100-dlrmv2-server",
        "DLRM-DCNv2 samples/s per H100, MLPerf Server",
        63769.0,
        "samples/s",
        "https://github.com/mlcommons/inference_results_v4.1/blob/main/closed/NVIDIA/results/"
        "DGX-H100_H100-SXM-80GBx8_TRT/dlrm-v2-99/Server/performance/run_1/"
        "mlperf_log_summary.txt",
        samples,
        0.10,
        f"best pairs/s per GPU at {DLRM_PRECISION_NOTE} over batches up to the submission's "
        f"Server batch ({model.max_batch:,} pairs) with one batch <= 30 ms (batch "
        f"{best.batch:,}, {best.bound}-bound) / {DLRM_PAIRS_PER_SAMPLE:.0f} pairs per sample",
    )


def check_h100_dlrm_offline(cat: Catalog) -> CheckResult:
    model = cat.model("dlrm-dcnv2")
    assert isinstance(model, RRModel)
    best = rr_best_throughput(
        cat.chip("h100"), model, _platform_host(cat, "h100"), max_batch=DLRM_OFFLINE_BATCH
    )
    samples = best.items_per_s_per_chip / DLRM_PAIRS_PER_SAMPLE
    return check_result(
        "h100-dlrmv2-offline",
        "DLRM-DCNv2 samples/s per H100, MLPerf Offline",
        74457.0,
        "samples/s",
        "https://github.com/mlcommons/inference_results_v4.1/blob/main/closed/NVIDIA/results/"
        "DGX-H100_H100-SXM-80GBx8_TRT/dlrm-v2-99/Offline/performance/run_1/"
        "mlperf_log_summary.txt",
        samples,
        0.10,
        f"best pairs/s per GPU at {DLRM_PRECISION_NOTE} over batches up to the submission's "
        f"Offline batch ({DLRM_OFFLINE_BATCH:,} pairs, {DLRM_OFFLINE_CONFIG}), no latency "
        f"bound (batch {best.batch:,}, {best.bound}-bound) / {DLRM_PAIRS_PER_SAMPLE:.0f} pairs "
        "per sample",
    )


CHECKS: tuple[Callable[[Catalog], CheckResult], ...] = (
    check_mtia2i_vs_mtia1,
    check_h100_dlrm_server,
    check_h100_dlrm_offline,
)


def run_validation(cat: Catalog) -> list[CheckResult]:
    """Run every check; extra checks (platform, capacity) register in CHECKS."""
    return [check(cat) for check in CHECKS]
