"""How far the H100 DLRM-v2 estimate moves with precision, batch and the GEMM model.

Not a speed benchmark: it prints the figures docs/validation.md quotes for the DLRM checks,
so they can be reproduced. Rows, in MLPerf samples/s per GPU (270 pairs per sample):

* the R&R roofline (`perf/rr.py`, flat `efficiency.gemm`) at FP16 (what the checks model)
  and INT8 (what NVIDIA's submission runs), at the old cap (8,192), the Server batch
  (51,200) and the Offline batch (600,000);
* the dense layers alone through the shape-aware GEMM model of the LLM side
  (`perf/ops.gemm_time_s`, the fitted nvidia-gpu family), one kernel per layer in sequence,
  with no embedding, interaction or launch cost: an upper bound of that model; then, at FP16,
  with the roofline's embedding and launch terms overlapped (max) or serialized.

    .venv/bin/python benchmarks/dlrm_sensitivity.py
"""

from __future__ import annotations

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.perf.ops import gemm_time_s
from mtia_cluster.perf.rr import rr_batch_cost
from mtia_cluster.perf.validation import DLRM_PAIRS_PER_SAMPLE, _platform_host

# DLRM-DCNv2 dense layers (in, out) from hardware-workload-facts §4.1: bottom MLP
# 13-512-256-128, three low-rank (512) DCNv2 cross layers on 27 x 128 = 3,456, top MLP
# 3,456-1,024-1,024-512-256-1. Their MACs sum to the model file's 16.03 M per pair.
LAYERS = (
    [(13, 512), (512, 256), (256, 128)]
    + [(3456, 512), (512, 3456)] * 3
    + [(3456, 1024), (1024, 1024), (1024, 512), (512, 256), (256, 1)]
)
BATCHES = np.array([8192, 51_200, 600_000])
WEIGHT_BYTES = {"fp16": 2.0, "int8": 1.0}


def _gemms_s(chip, dtype: str) -> np.ndarray:
    """Seconds of the dense layers, one kernel each, through the fitted GEMM model."""
    parts = [
        gemm_time_s(
            BATCHES.astype(float),
            k,
            n,
            peak_flops=chip.gemm_peak(dtype),
            bw_bytes_per_s=chip.offchip.bandwidth_bytes_per_s,
            units=chip.compute_units,
            p=chip.op_params,
            weight_bytes=WEIGHT_BYTES[dtype],
        )
        for k, n in LAYERS
    ]
    return np.sum(parts, axis=0)


def main() -> None:
    cat = load_catalog()
    chip, model = cat.chip("h100"), cat.model("dlrm-dcnv2")
    host = _platform_host(cat, "h100")
    print(f"{'model':<34}" + "".join(f"{int(b):>12,}" for b in BATCHES))
    for dtype in ("fp16", "int8"):
        cost = rr_batch_cost(chip, model, BATCHES, dtype=dtype, host=host)  # type: ignore[arg-type]
        row = cost.throughput_per_s / DLRM_PAIRS_PER_SAMPLE
        print(f"{'roofline, flat efficiency, ' + dtype:<34}" + "".join(f"{x:>12,.0f}" for x in row))
    for dtype in ("fp16", "int8"):
        t = _gemms_s(chip, dtype)
        row = BATCHES / t / DLRM_PAIRS_PER_SAMPLE
        print(f"{'op-model GEMMs only, ' + dtype:<34}" + "".join(f"{x:>12,.0f}" for x in row))
    # FP16, the op-model GEMMs with the roofline's other device terms: overlapped with the
    # embedding and activation traffic (max, as perf/rr.py does now) or the embedding gather
    # serialized before the GEMMs (one inference stream), plus the per-batch launches.
    cost = rr_batch_cost(chip, model, BATCHES, dtype="fp16", host=host)  # type: ignore[arg-type]
    gemm = _gemms_s(chip, "fp16")
    over = np.maximum.reduce([gemm, cost.simd_s, cost.sram_s, cost.offchip_s]) + cost.launch_s
    emb = BATCHES * model.embedding_bytes_per_sample  # type: ignore[union-attr]
    hit = cost.sram_hit_fraction
    eff = chip.efficiency
    gather = emb * hit / (chip.sram.bandwidth_bytes_per_s * eff.sram) + emb * (1 - hit) / (
        chip.offchip.bandwidth_bytes_per_s * eff.offchip_stream * eff.ecc_throughput
    )
    for name, t in (("overlapped", over), ("gather serialized", gemm + gather + cost.launch_s)):
        row = BATCHES / t / DLRM_PAIRS_PER_SAMPLE
        print(f"{'op-model, ' + name + ', fp16':<34}" + "".join(f"{x:>12,.0f}" for x in row))
    print("published (MLPerf v4.1, INT8): Server 63,769, Offline 74,457")


if __name__ == "__main__":
    main()
