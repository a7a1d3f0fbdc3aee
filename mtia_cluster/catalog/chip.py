"""An accelerator chip, as data: peaks per dtype, memory tiers, power, links, efficiencies.

One YAML file per chip under ``configs/catalog/chips/``. There is no class per chip: MTIA 2i
and H100 are two instances of :class:`Chip`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtia_cluster.catalog.models import ChipFile, Quantity
from mtia_cluster.catalog.op_model import OpParams, load_op_params, op_model_path
from mtia_cluster.catalog.quantity import Provenance, SourcedReader, field_error
from mtia_cluster.config.models import Dtype
from mtia_cluster.errors import UserError
from mtia_cluster.units import GB, MB

TERA = 1e12

# Bytes per element of each dtype the cost model knows.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "mx8": 1.0,
    "mx4": 0.5,
    "fp4": 0.5,
}
OFFCHIP_KINDS = ("lpddr5", "hbm2e", "hbm3", "hbm3e", "hbm4")


@dataclass(frozen=True)
class MemoryTier:
    """One level of the memory hierarchy: capacity and achievable peak bandwidth."""

    name: str  # pe_local | sram | offchip
    kind: str  # e.g. sram, lpddr5, hbm3e
    capacity_bytes: float
    bandwidth_bytes_per_s: float


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of peak, each taken from a published fact (see docs/validation.md)."""

    gemm: float  # fraction of peak GEMM FLOPS reached by large GEMMs (R&R model only)
    offchip_stream: float  # fraction of off-chip bandwidth reached by streaming reads
    sram: float  # fraction of on-chip SRAM bandwidth reached
    ecc_throughput: float  # multiplier on off-chip bandwidth with ECC on (1.0 = no cost)
    pcie: float  # fraction of the host link's bandwidth reached by DMA


@dataclass(frozen=True)
class Chip:
    """An accelerator. Peaks are dense unless the table says sparse; units in field names."""

    name: str
    display_name: str
    vendor: str
    file: str
    clock_mhz: float
    gemm_dense_flops: dict[str, float]  # dtype -> FLOP/s (or OP/s for int8)
    gemm_sparse_flops: dict[str, float]
    simd_flops: dict[str, float]
    sram: MemoryTier
    offchip: MemoryTier
    pe_local: MemoryTier | None
    tdp_w: float
    typical_w: float
    idle_w: float
    host_link_bytes_per_s: float
    host_link: str
    scale_up_domain: int
    scale_up_bytes_per_s: float
    scale_out_bytes_per_s: float
    launch_overhead_s: float
    efficiency: Efficiency
    compute_units: int | None  # SMs / CUs / PEs that GEMM tiles are spread over (None: unknown)
    peak_basis: str  # what the peaks mean, e.g. "dense ... at the shipping TDP of 700 W"
    interconnect: str  # scale-up fabric generation naming its collective parameters ("": default)
    op_params: OpParams  # the architecture family's operator-model parameters (LLM model)
    provenance: dict[str, Provenance] = field(default_factory=dict, compare=False, repr=False)

    @property
    def dtypes(self) -> list[str]:
        """Dtypes with a GEMM peak on this chip."""
        return list(self.gemm_dense_flops)

    def gemm_peak(self, dtype: str) -> float:
        """Dense matrix peak for `dtype` in FLOP/s.

        A dtype without matrix units but with a SIMD/vector peak (FP32 on MTIA) runs on the
        vector units at that peak; a dtype with neither is impossible (a UserError).
        """
        if dtype in self.gemm_dense_flops:
            return self.gemm_dense_flops[dtype]
        if dtype in self.simd_flops:
            return self.simd_flops[dtype]
        raise UserError(
            f"chip {self.name} has no {dtype} compute (has {', '.join(self.dtypes)})",
            file=self.file,
            field="gemm_dense_tflops",
            value=dtype,
        )

    def simd_peak(self, dtype: str) -> float:
        """Vector/SIMD peak for `dtype` (falls back to the widest lower-precision entry)."""
        if dtype in self.simd_flops:
            return self.simd_flops[dtype]
        for alt in ("fp16", "bf16", "fp32"):
            if alt in self.simd_flops:
                return self.simd_flops[alt]
        # GPUs without a separate SIMD table: vector work runs at 1/16 of the GEMM peak, an
        # estimate documented in docs/validation.md.
        return self.gemm_peak(dtype) / 16.0

    def power_w(self, utilization: np.ndarray | float) -> np.ndarray | float:
        """Power as idle + (TDP - idle) * utilization (linear, CloudSim-style)."""
        u = np.clip(utilization, 0.0, 1.0)
        return self.idle_w + (self.tdp_w - self.idle_w) * u


def load_chip_data(spec: ChipFile, path: Path) -> Chip:
    """Build one chip from its validated file (after `base:` resolution); `path` is for
    messages and for finding the family's operator-model file beside it."""
    r = SourcedReader(path, spec.sources)
    q = r.quantity
    power, link, net, eff = spec.power, spec.host_link, spec.network, spec.efficiency
    sram, offchip, pe_local = _memory_tiers(r, spec)
    chip = Chip(
        name=spec.name,
        display_name=spec.display_name,
        vendor=spec.vendor,
        file=str(path),
        clock_mhz=q(spec.clock_mhz, "clock_mhz", positive=True, default=None),
        gemm_dense_flops=_flops(r, spec.gemm_dense_tflops, "gemm_dense_tflops"),
        gemm_sparse_flops=_flops(r, spec.gemm_sparse_tflops, "gemm_sparse_tflops"),
        simd_flops=_flops(r, spec.simd_tflops, "simd_tflops"),
        sram=sram,
        offchip=offchip,
        pe_local=pe_local,
        tdp_w=q(power.tdp_w, "power.tdp_w", positive=True),
        typical_w=q(power.typical_w, "power.typical_w", positive=True),
        idle_w=q(power.idle_w, "power.idle_w", positive=True),
        host_link=link.kind,
        host_link_bytes_per_s=q(link.bandwidth_gb_s, "host_link.bandwidth_gb_s", positive=True)
        * GB,
        scale_up_domain=int(q(net.scale_up_domain, "network.scale_up_domain", positive=True)),
        scale_up_bytes_per_s=q(net.scale_up_gb_s, "network.scale_up_gb_s", positive=True) * GB,
        scale_out_bytes_per_s=q(net.scale_out_gb_s, "network.scale_out_gb_s", positive=True) * GB,
        launch_overhead_s=q(spec.launch_overhead_us, "launch_overhead_us", positive=True) * 1e-6,
        efficiency=Efficiency(
            **{
                name: q(getattr(eff, name), f"efficiency.{name}", positive=True)
                for name in _EFFICIENCIES
            }
        ),
        compute_units=(
            int(q(spec.compute_units, "compute_units", positive=True))
            if spec.compute_units is not None
            else None
        ),
        peak_basis=spec.peak_basis,
        interconnect=spec.interconnect,
        op_params=load_op_params(op_model_path(spec.op_model, path)).for_interconnect(
            spec.interconnect
        ),
        provenance=r.provenance,
    )
    _check_chip(chip, path)
    return chip


_EFFICIENCIES = ("gemm", "offchip_stream", "sram", "ecc_throughput", "pcie")


def _memory_tiers(
    r: SourcedReader, spec: ChipFile
) -> tuple[MemoryTier, MemoryTier, MemoryTier | None]:
    """The chip's SRAM, off-chip memory and optional per-PE local memory (bytes, bytes/s),
    read in that order (the order their sources are recorded)."""
    q, mem = r.quantity, spec.memory
    sram = MemoryTier(
        "sram",
        "sram",
        q(mem.sram.capacity_mb, "memory.sram.capacity_mb", positive=True) * MB,
        q(mem.sram.bandwidth_gb_s, "memory.sram.bandwidth_gb_s", positive=True) * GB,
    )
    offchip = MemoryTier(
        "offchip",
        mem.offchip.kind,
        q(mem.offchip.capacity_gb, "memory.offchip.capacity_gb", positive=True) * GB,
        q(mem.offchip.bandwidth_gb_s, "memory.offchip.bandwidth_gb_s", positive=True) * GB,
    )
    if mem.pe_local is None:
        return sram, offchip, None
    pe_local = MemoryTier(
        "pe_local",
        "sram",
        q(mem.pe_local.capacity_mb, "memory.pe_local.capacity_mb", positive=True) * MB,
        q(mem.pe_local.bandwidth_gb_s, "memory.pe_local.bandwidth_gb_s", positive=True) * GB,
    )
    return sram, offchip, pe_local


def _flops(r: SourcedReader, tflops: dict[Dtype, Quantity], path: str) -> dict[str, float]:
    """A per-dtype TFLOPS table in FLOP/s."""
    return {k: v * TERA for k, v in r.table(tflops, path).items()}


def _check_chip(chip: Chip, path: Path) -> None:
    """Cross-field checks: the things a single field validator cannot see."""
    if not chip.gemm_dense_flops:
        raise field_error(path, "gemm_dense_tflops", "a chip needs at least one dense GEMM peak")
    for dtype in list(chip.gemm_dense_flops) + list(chip.gemm_sparse_flops):
        if dtype not in DTYPE_BYTES:
            raise field_error(path, "gemm_dense_tflops", "unknown dtype", dtype)
    if not chip.idle_w <= chip.typical_w <= chip.tdp_w:
        raise field_error(
            path,
            "power",
            "need idle_w <= typical_w <= tdp_w",
            (chip.idle_w, chip.typical_w, chip.tdp_w),
        )
    for name in _EFFICIENCIES:
        if getattr(chip.efficiency, name) > 1.0:
            raise field_error(
                path, f"efficiency.{name}", "must be <= 1", getattr(chip.efficiency, name)
            )
    if chip.sram.capacity_bytes >= chip.offchip.capacity_bytes:
        raise field_error(
            path, "memory.sram.capacity_mb", "on-chip SRAM must be smaller than off-chip"
        )
