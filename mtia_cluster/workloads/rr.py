"""Ranking & recommendation (DLRM-style) models as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtia_cluster.catalog.chip import DTYPE_BYTES
from mtia_cluster.catalog.quantity import Provenance, SourcedReader, read_sources
from mtia_cluster.config import Fields

MB = 1e6
GB = 1e9
KB = 1e3


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


def parse_rr(data: dict, path: Path) -> RRModel:
    """Parse an R&R model mapping (after `base:` resolution)."""
    f = Fields(data, path)
    r = SourcedReader(f, read_sources(f))
    q = r.quantity
    emb = f.sub("embedding")
    dtype = f.str("dtype", choices=DTYPE_BYTES)
    return RRModel(
        name=f.str("name"),
        display_name=f.str("display_name"),
        file=str(path),
        dtype=dtype,
        dense_flop_per_sample=q(f, "dense_mflop_per_sample", positive=True) * MB,
        dense_weight_bytes=q(f, "dense_weight_mb", positive=True) * MB,
        activation_bytes_per_sample=q(f, "activation_kb_per_sample", positive=True) * KB,
        activation_traffic_bytes_per_sample=q(f, "activation_traffic_kb_per_sample", positive=True)
        * KB,
        kernels_per_batch=int(q(f, "kernels_per_batch", positive=True)),
        accelerators=f.int("accelerators", positive=True),
        max_batch=int(q(f, "max_batch", positive=True)),
        embedding_table_bytes=q(emb, "table_gb", positive=True) * GB,
        embedding_lookups_per_sample=q(emb, "lookups_per_sample", positive=True),
        embedding_dim=int(q(emb, "dim", positive=True)),
        embedding_dtype=emb.str("dtype", choices=DTYPE_BYTES),
        embedding_access_skew=q(emb, "access_skew", max_value=0.999),
        input_bytes_per_sample=q(f, "input_bytes_per_sample", positive=True),
        output_bytes_per_sample=q(f, "output_bytes_per_sample", positive=True),
        host_cpu_s_per_sample=q(f, "host_cpu_us_per_sample", positive=True) * 1e-6,
        host_dram_bytes_per_sample=q(f, "host_dram_bytes_per_sample", positive=True),
        provenance=r.provenance,
    )
