"""Ranking & recommendation (DLRM-style) models as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtia_cluster.catalog.chip import DTYPE_BYTES
from mtia_cluster.catalog.models import RRModelFile
from mtia_cluster.catalog.quantity import Provenance, SourcedReader
from mtia_cluster.units import GB, KB, MB, MEGA


@dataclass(frozen=True)
class RRModel:
    """A DLRM-style model: embedding tables + dense (MLP/interaction) network, per sample.

    A *sample* is one user-item pair (an "item" of a request). All per-sample costs scale with
    the number of items in a batch; weights are read once per batch.
    """

    name: str
    display_name: str
    file: str
    dtype: str  # dense compute dtype
    dense_flop_per_sample: float
    dense_weight_bytes: float  # at the model's dtype
    activation_bytes_per_sample: float  # live working set (decides SRAM residency)
    activation_traffic_bytes_per_sample: float  # read + written by all layers (bandwidth)
    kernels_per_batch: int
    accelerators: int  # shard group size (embeddings split across them, one PCIe switch)
    max_batch: int
    embedding_table_bytes: float
    embedding_lookups_per_sample: float
    embedding_dim: int
    embedding_dtype: str
    embedding_access_skew: float
    input_bytes_per_sample: float
    output_bytes_per_sample: float
    host_cpu_s_per_sample: float
    host_dram_bytes_per_sample: float
    provenance: dict[str, Provenance] = field(default_factory=dict, compare=False, repr=False)
    kind: Literal["rr"] = "rr"

    @property
    def embedding_bytes_per_sample(self) -> float:
        """Bytes of embedding rows gathered per sample."""
        return (
            self.embedding_lookups_per_sample
            * self.embedding_dim
            * DTYPE_BYTES[self.embedding_dtype]
        )

    @property
    def size_bytes(self) -> float:
        return self.embedding_table_bytes + self.dense_weight_bytes


def parse_rr(spec: RRModelFile, path: Path) -> RRModel:
    """Build an R&R model from its validated file (after `base:` resolution)."""
    r = SourcedReader(path, spec.sources)

    def q(name: str, *, positive: bool = True, max_value: float | None = None) -> float:
        node: Any = spec
        for part in name.split("."):
            node = getattr(node, part)
        return r.quantity(node, name, positive=positive, max_value=max_value)

    emb = spec.embedding
    return RRModel(
        name=spec.name,
        display_name=spec.display_name,
        file=str(path),
        dtype=spec.dtype,
        dense_flop_per_sample=q("dense_mflop_per_sample") * MEGA,
        dense_weight_bytes=q("dense_weight_mb") * MB,
        activation_bytes_per_sample=q("activation_kb_per_sample") * KB,
        activation_traffic_bytes_per_sample=q("activation_traffic_kb_per_sample") * KB,
        kernels_per_batch=int(q("kernels_per_batch")),
        accelerators=spec.accelerators,
        max_batch=int(q("max_batch")),
        embedding_table_bytes=q("embedding.table_gb") * GB,
        embedding_lookups_per_sample=q("embedding.lookups_per_sample"),
        embedding_dim=int(q("embedding.dim")),
        embedding_dtype=emb.dtype,
        embedding_access_skew=q("embedding.access_skew", positive=False, max_value=0.999),
        input_bytes_per_sample=q("input_bytes_per_sample"),
        output_bytes_per_sample=q("output_bytes_per_sample"),
        host_cpu_s_per_sample=q("host_cpu_us_per_sample") * 1e-6,
        host_dram_bytes_per_sample=q("host_dram_bytes_per_sample"),
        provenance=r.provenance,
    )
