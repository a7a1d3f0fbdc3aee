"""R&R cost model: (chip, model, batch items, dtype) -> per-stage times, bound, power.

A roofline over the memory tiers of one accelerator (or a shard group of `model.accelerators`
chips that split the embedding tables and share the batch):

* on-chip SRAM is split into a hardware-managed cache for hot embedding rows
  (``SRAM_CACHE_FRACTION``) and a software-managed scratch for dense weights and activations;
* dense weights stay in scratch when they fit (read once per batch from SRAM), else they are
  streamed from LPDDR/HBM every batch; activations (read and written by every kernel) spill to
  off-chip memory when ``batch x activation_bytes`` no longer fits next to the weights: the
  residency cliff (ISCA'25 §6 reports -90% throughput from such a spill);
* embedding lookups hit SRAM with probability ``hit = x ** (1 - skew)``, where ``x`` is the
  cached fraction of the chip's table share (a power-law popularity);
* device time = max(GEMM, SIMD pooling, SRAM traffic, off-chip traffic) + launches;
* the host feeds it: CPU preprocessing on the socket's cores per accelerator and host-DRAM
  traffic, then PCIe in and out. Stages pipeline across batches, so throughput is
  ``batch / slowest stage`` and the latency of one batch is the sum of the stages.

All functions are pure and vectorized over the batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog.chip import DTYPE_BYTES, Chip
from mtia_cluster.catalog.system import Host
from mtia_cluster.errors import UserError
from mtia_cluster.workloads.rr import RRModel

# Share of on-chip SRAM used as a cache for embedding rows; the rest is scratch for weights and
# activations. MTIA 2i splits its SRAM in 32 MB units between LLC and scratch (ISCA'25 §4.1);
# the production split is not published, so half is assumed (an estimate, docs/validation.md).
SRAM_CACHE_FRACTION = 0.5


@dataclass(frozen=True)
class RRCost:
    """Per-batch costs, arrays indexed like `batch` (seconds unless named otherwise)."""

    batch: np.ndarray
    group: int  # accelerators in the shard group
    compute_s: np.ndarray
    simd_s: np.ndarray
    sram_s: np.ndarray
    offchip_s: np.ndarray
    launch_s: float
    device_s: np.ndarray
    pcie_in_s: np.ndarray
    pcie_out_s: np.ndarray
    host_cpu_s: np.ndarray  # preprocessing of the batch on the group's share of cores
    host_dram_s: np.ndarray
    host_cpu_s_per_item: float  # on one core
    sram_hit_fraction: float
    weights_in_sram: bool
    activations_spill: np.ndarray  # bool per batch size
    offchip_kind: str
    idle_w: float
    tdp_w: float

    @property
    def host_s(self) -> np.ndarray:
        return np.maximum(self.host_cpu_s, self.host_dram_s)

    @property
    def latency_s(self) -> np.ndarray:
        """Time for one batch through host, PCIe in, device and PCIe out."""
        return self.host_s + self.pcie_in_s + self.device_s + self.pcie_out_s

    @property
    def stage_s(self) -> np.ndarray:
        """The slowest pipeline stage per batch size."""
        return np.maximum.reduce([self.device_s, self.pcie_in_s, self.pcie_out_s, self.host_s])

    @property
    def throughput_per_s(self) -> np.ndarray:
        """Items per second of the whole shard group at steady state."""
        return self.batch / self.stage_s

    @property
    def utilization(self) -> np.ndarray:
        """Accelerator busy fraction at that throughput."""
        return self.device_s / self.stage_s

    @property
    def power_w(self) -> np.ndarray:
        """Power per accelerator: idle + (TDP - idle) x utilization."""
        return self.idle_w + (self.tdp_w - self.idle_w) * self.utilization

    @property
    def energy_per_sample_j(self) -> np.ndarray:
        return self.group * self.power_w / self.throughput_per_s

    @property
    def bound(self) -> list[str]:
        """What limits throughput at each batch size."""
        names = [
            "compute",
            "simd",
            "sram",
            self.offchip_kind,
            "launch",
            "pcie",
            "pcie",
            "host-cpu",
            "host-dram",
        ]
        device_parts = [
            self.compute_s,
            self.simd_s,
            self.sram_s,
            self.offchip_s,
            np.full_like(self.compute_s, self.launch_s),
        ]
        outer = [self.pcie_in_s, self.pcie_out_s, self.host_cpu_s, self.host_dram_s]
        out = []
        for i in range(len(self.batch)):
            stages = [self.device_s[i]] + [o[i] for o in outer]
            k = int(np.argmax(stages))
            if k == 0:
                out.append(names[int(np.argmax([p[i] for p in device_parts]))])
            else:
                out.append(names[4 + k])
        return out


def embedding_hit_fraction(chip: Chip, model: RRModel) -> float:
    """Fraction of embedding lookups served from the SRAM cache (power-law popularity)."""
    cache = chip.sram.capacity_bytes * SRAM_CACHE_FRACTION
    table_per_chip = model.embedding_table_bytes / model.accelerators
    x = min(1.0, cache / table_per_chip)
    return float(x ** (1.0 - model.embedding_access_skew))


@dataclass(frozen=True)
class _Traffic:
    """Bytes per chip per batch served by SRAM and off-chip, and why (see _memory_traffic)."""

    sram_bytes: np.ndarray
    off_bytes: np.ndarray
    hit: float  # embedding rows found in the SRAM cache
    weights_in_sram: bool  # dense weights fit in SRAM scratch
    spill: np.ndarray  # per batch size: activations spill off-chip


def _memory_traffic(chip: Chip, model: RRModel, b: np.ndarray, scale: float) -> _Traffic:
    """Where a batch's bytes are read: embeddings (SRAM cache hits, else off-chip), dense
    weights (SRAM scratch when they fit) and activations (SRAM until they spill). `b` is the
    batch sizes, `scale` the dtype's bytes over the model's."""
    n = model.accelerators
    weights = model.dense_weight_bytes * scale
    act = b * model.activation_bytes_per_sample * scale / n  # live set per chip, per batch
    # Every layer reads its input and writes its output: traffic per batch is the model's
    # activation traffic per sample, served by SRAM scratch or, once spilled, off-chip.
    act_traffic = b * model.activation_traffic_bytes_per_sample * scale / n
    scratch = chip.sram.capacity_bytes * (1.0 - SRAM_CACHE_FRACTION)
    weights_in_sram = weights <= scratch
    spill = act > (scratch - weights if weights_in_sram else scratch)
    hit = embedding_hit_fraction(chip, model)
    emb = b * model.embedding_bytes_per_sample / n
    sram_bytes = emb * hit + np.where(spill, 0.0, act_traffic) + (weights if weights_in_sram else 0)
    off_bytes = (
        emb * (1 - hit) + np.where(spill, act_traffic, 0.0) + (0 if weights_in_sram else weights)
    )
    return _Traffic(sram_bytes, off_bytes, hit, bool(weights_in_sram), spill)


def rr_batch_cost(
    chip: Chip,
    model: RRModel,
    batch: np.ndarray | int | list[int],
    dtype: str | None = None,
    host: Host | None = None,
) -> RRCost:
    """Cost of running batches of `batch` items of `model` on `chip` (vectorized)."""
    if model.kind != "rr":
        raise UserError("not an R&R model", field="model", value=model.name)
    dtype = dtype or model.dtype
    peak = chip.gemm_peak(dtype)  # raises a UserError naming the chip file for a bad dtype
    b = np.atleast_1d(np.asarray(batch, dtype=np.float64))
    if np.any(b < 1):
        raise UserError("batch must be >= 1", field="batch", value=int(b.min()))
    n = model.accelerators
    eff = chip.efficiency
    scale = DTYPE_BYTES[dtype] / DTYPE_BYTES[model.dtype]
    mem = _memory_traffic(chip, model, b, scale)
    sram_bytes, off_bytes = mem.sram_bytes, mem.off_bytes
    hit, weights_in_sram, spill = mem.hit, mem.weights_in_sram, mem.spill
    compute_s = b * model.dense_flop_per_sample / (n * peak * eff.gemm)
    pool_ops = b * model.embedding_lookups_per_sample * model.embedding_dim / n
    simd_s = pool_ops / (chip.simd_peak(model.embedding_dtype) * eff.gemm)
    sram_s = sram_bytes / (chip.sram.bandwidth_bytes_per_s * eff.sram)
    offchip_s = off_bytes / (
        chip.offchip.bandwidth_bytes_per_s * eff.offchip_stream * eff.ecc_throughput
    )
    launch_s = model.kernels_per_batch * chip.launch_overhead_s
    device_s = np.maximum.reduce([compute_s, simd_s, sram_s, offchip_s]) + launch_s
    link = chip.host_link_bytes_per_s * eff.pcie * n
    cores = host.cores_per_accelerator if host else _default_cores(chip)
    dram_bw = host.dram_bandwidth_per_accelerator if host else np.inf
    return RRCost(
        batch=b,
        group=n,
        compute_s=compute_s,
        simd_s=simd_s,
        sram_s=sram_s,
        offchip_s=offchip_s,
        launch_s=launch_s,
        device_s=device_s,
        pcie_in_s=b * model.input_bytes_per_sample / link,
        pcie_out_s=b * model.output_bytes_per_sample / link,
        host_cpu_s=b * model.host_cpu_s_per_sample / (n * cores),
        host_dram_s=b * model.host_dram_bytes_per_sample / (n * dram_bw),
        host_cpu_s_per_item=model.host_cpu_s_per_sample,
        sram_hit_fraction=hit,
        weights_in_sram=bool(weights_in_sram),
        activations_spill=spill,
        offchip_kind="lpddr" if chip.offchip.kind.startswith("lpddr") else "hbm",
        idle_w=chip.idle_w,
        tdp_w=chip.tdp_w,
    )


def _default_cores(chip: Chip) -> float:
    """Without a host, assume host CPU never limits (an explicit, documented choice)."""
    return float("inf")
