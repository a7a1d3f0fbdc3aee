"""Operator-model parameters of an architecture family, as catalog data.

One YAML file per family under ``configs/catalog/op_models/`` (a chip names its family with
``op_model:``). Every number is a sourced quantity; numbers fitted by ``mtia-cluster
calibrate fit`` carry ``status: calibrated`` and the file's ``fitted_on:`` block says which
measurements they came from. Times are in microseconds in the file, seconds in
:class:`OpParams`. Collectives depend on the interconnect more than on the compute family, so
a family may also hold ``collectives_by_interconnect: {name: ...}``; a chip naming one with
``interconnect:`` uses those (H100 and H200 share NVLink4/NVSwitch), others the default.
Likewise ``gemm_by_dtype: {dtype: {peak_fraction, k_overhead}}`` holds GEMM parameters
measured for one dtype (FP8 kernels on Hopper), used by :meth:`OpParams.for_dtype`; other
dtypes use the family's ``gemm`` block (fitted on FP16 operators, per-tile cost inside it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mtia_cluster.catalog.models import (
    OpAttention,
    OpCollectives,
    OpKernel,
    OpLink,
    OpModelFile,
    Quantity,
)
from mtia_cluster.catalog.quantity import SourcedReader
from mtia_cluster.config import load_yaml
from mtia_cluster.config.schema import validate
from mtia_cluster.errors import UserError
from mtia_cluster.paths import configs_dir

US = 1e-6
ELEMENTWISE_KINDS = ("emb", "norm", "rope", "act", "add")


@dataclass(frozen=True)
class Elementwise:
    """A memory-bound kernel kind: achieved fraction of bandwidth and a launch floor."""

    bw_fraction: float
    floor_s: float


@dataclass(frozen=True)
class Collective:
    """A collective on one fabric: fixed latency and achieved fraction of link bandwidth."""

    latency_s: float
    bw_fraction: float


@dataclass(frozen=True)
class OpParams:
    """Operator-model parameters of one architecture family (see module docstring)."""

    family: str
    gemm_peak_fraction: float
    gemm_bw_fraction: float
    gemm_overlap_p: float
    gemm_floor_s: float
    elementwise: dict[str, Elementwise]
    attn_prefill_peak_fraction: float
    attn_decode_bw_fraction: float
    all_reduce_up: Collective
    all_reduce_out: Collective
    send_recv_up: Collective
    send_recv_out: Collective
    iteration_overhead_s: float
    # Fixed cost per GEMM output tile, as extra K elements at the dtype's rate (0: absorbed in
    # gemm_peak_fraction, as the FP16 fit has it); set per dtype by gemm_by_dtype.
    gemm_k_overhead: float = 0.0
    # Routed-expert grouped GEMMs of a MoE layer reach this fraction of the dense GEMM peak
    # fraction (``moe.expert_gemm_peak_scale``; 1 when the family file has no ``moe:`` block).
    moe_expert_peak_scale: float = 1.0
    # Fixed time of one layer's attention kernel on the KV-read side (``attention.
    # decode_floor_us``; 0 when the family file has none): memory_s = floor + bytes / BW.
    attn_floor_s: float = 0.0
    # dtype -> (peak_fraction, k_overhead) measured for that dtype (see for_dtype).
    gemm_dtypes: dict[str, tuple[float, float]] = field(default_factory=dict, compare=False)
    # Interconnect-specific collectives (profile name -> (ar_up, ar_out, sr_up, sr_out)); a
    # chip naming a profile here uses it instead of the family's default collectives.
    collective_profiles: dict[str, tuple[Collective, Collective, Collective, Collective]] = field(
        default_factory=dict, compare=False
    )
    provenance: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def for_dtype(self, dtype: str) -> OpParams:
        """These parameters with `dtype`'s own GEMM efficiency, when the family has it."""
        if dtype not in self.gemm_dtypes:
            return self
        frac, k0 = self.gemm_dtypes[dtype]
        return replace(self, gemm_peak_fraction=frac, gemm_k_overhead=k0)

    def for_interconnect(self, profile: str) -> OpParams:
        """These parameters with `profile`'s collectives, when the family has them."""
        if profile not in self.collective_profiles:
            return self
        ar_up, ar_out, sr_up, sr_out = self.collective_profiles[profile]
        return replace(
            self,
            all_reduce_up=ar_up,
            all_reduce_out=ar_out,
            send_recv_up=sr_up,
            send_recv_out=sr_out,
        )


def op_model_path(family: str, chip_file: Path | None = None) -> Path:
    """The family's file: beside the chip's catalog if there is one, else the shipped one."""
    if chip_file is not None:
        local = chip_file.parent.parent / "op_models" / f"{family}.yaml"
        if local.exists():
            return local
    return configs_dir() / "catalog" / "op_models" / f"{family}.yaml"


@functools.lru_cache(maxsize=32)
def _load_cached(path: Path, mtime_ns: int) -> OpParams:
    return parse_op_params(load_yaml(path), path)


def load_op_params(path: Path) -> OpParams:
    """Load (cached on the file's modification time, so a fresh fit is seen)."""
    if not path.exists():
        raise UserError("operator-model family file not found", file=path)
    return _load_cached(path, path.stat().st_mtime_ns)


def gemm_dtypes(spec: OpModelFile, r: SourcedReader) -> dict[str, tuple[float, float]]:
    """``gemm_by_dtype``: dtype -> (peak_fraction, k_overhead), range and provenance checked."""
    return {
        str(dt): (
            r.quantity(
                d.peak_fraction, f"gemm_by_dtype.{dt}.peak_fraction", positive=True, max_value=1.0
            ),
            r.quantity(d.k_overhead, f"gemm_by_dtype.{dt}.k_overhead", max_value=65536.0),
        )
        for dt, d in spec.gemm_by_dtype.items()
    }


def moe_expert_peak_scale(spec: OpModelFile, r: SourcedReader) -> float:
    """``moe.expert_gemm_peak_scale`` in (0, 1], provenance checked; 1 without a ``moe:``."""
    if spec.moe is None:
        return 1.0
    q = spec.moe.expert_gemm_peak_scale
    return r.quantity(q, "moe.expert_gemm_peak_scale", positive=True, max_value=1.0)


def attn_floor_s(att: OpAttention, r: SourcedReader) -> float:
    """``attention.decode_floor_us`` in seconds, provenance checked; 0 when absent."""
    if att.decode_floor_us is None:
        return 0.0
    return r.quantity(att.decode_floor_us, "attention.decode_floor_us", max_value=1000.0) * US


def parse_op_params(data: dict[str, Any], path: Path) -> OpParams:
    """Validate one family mapping against its typed model, then build the parameters; every
    quantity is range- and provenance-checked."""
    spec = validate(OpModelFile, data, path)
    r = SourcedReader(path, spec.sources)

    def frac(q: Quantity, name: str) -> float:
        return r.quantity(q, name, positive=True, max_value=1.0)

    def coll(link: OpLink, name: str) -> Collective:
        return Collective(
            r.quantity(link.latency_us, f"{name}.latency_us") * US,
            frac(link.bw_fraction, f"{name}.bw_fraction"),
        )

    def fabric_set(
        c: OpCollectives, name: str
    ) -> tuple[Collective, Collective, Collective, Collective]:
        return (
            coll(c.all_reduce.scale_up, f"{name}.all_reduce.scale_up"),
            coll(c.all_reduce.scale_out, f"{name}.all_reduce.scale_out"),
            coll(c.send_recv.scale_up, f"{name}.send_recv.scale_up"),
            coll(c.send_recv.scale_out, f"{name}.send_recv.scale_out"),
        )

    def kernel(kind: str) -> Elementwise:
        k: OpKernel = getattr(spec.elementwise, kind)
        return Elementwise(
            frac(k.bw_fraction, f"elementwise.{kind}.bw_fraction"),
            r.quantity(k.floor_us, f"elementwise.{kind}.floor_us") * US,
        )

    default = fabric_set(spec.collectives, "collectives")
    profiles = {
        name: fabric_set(c, f"collectives_by_interconnect.{name}")
        for name, c in spec.collectives_by_interconnect.items()
    }
    g, att = spec.gemm, spec.attention
    return OpParams(
        family=spec.name,
        gemm_peak_fraction=frac(g.peak_fraction, "gemm.peak_fraction"),
        gemm_bw_fraction=frac(g.bw_fraction, "gemm.bw_fraction"),
        gemm_overlap_p=r.quantity(g.overlap_p, "gemm.overlap_p", min_value=1.0, max_value=64.0),
        gemm_floor_s=r.quantity(g.floor_us, "gemm.floor_us") * US,
        elementwise={k: kernel(k) for k in ELEMENTWISE_KINDS},
        attn_prefill_peak_fraction=frac(
            att.prefill_peak_fraction, "attention.prefill_peak_fraction"
        ),
        attn_decode_bw_fraction=frac(att.decode_bw_fraction, "attention.decode_bw_fraction"),
        attn_floor_s=attn_floor_s(att, r),
        all_reduce_up=default[0],
        all_reduce_out=default[1],
        send_recv_up=default[2],
        send_recv_out=default[3],
        iteration_overhead_s=r.quantity(spec.iteration_overhead_us, "iteration_overhead_us") * US,
        gemm_dtypes=gemm_dtypes(spec, r),
        moe_expert_peak_scale=moe_expert_peak_scale(spec, r),
        collective_profiles=profiles,
        provenance={k: p.status for k, p in r.provenance.items()},
    )
