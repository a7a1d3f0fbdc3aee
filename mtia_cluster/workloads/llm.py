"""Large language models (dense and MoE) as data, with derived parameter and KV sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtia_cluster.catalog.chip import DTYPE_BYTES
from mtia_cluster.catalog.models import LLMModelFile, MoEBlock, Quantity
from mtia_cluster.catalog.quantity import Provenance, SourcedReader, field_error


@dataclass(frozen=True)
class MoE:
    """Mixture-of-experts structure of the MoE layers."""

    experts: int
    active_experts: int
    shared_experts: int
    expert_ffn: int
    layer_every: int  # every n-th layer is MoE (1 = all, after `dense_layers`)
    router_skew: float = 0.0  # Zipf exponent of expert popularity (perf/moe.py); 0 = uniform
    capacity_factor: float | None = None  # None = dropless


@dataclass(frozen=True)
class LLMModel:
    """A decoder-only transformer. Parameter counts are computed from the dimensions."""

    name: str
    display_name: str
    file: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    dtype: str
    kv_dtype: str
    moe: MoE | None
    dense_layers: int  # leading dense layers before MoE layers start (DeepSeek: 3)
    kv_elements_per_token_per_layer: int
    q_dim: int
    attn_params_override: int | None
    published_params: float
    published_active_params: float | None
    provenance: dict[str, Provenance] = field(default_factory=dict, compare=False, repr=False)
    kind: Literal["llm"] = "llm"

    def _is_moe_layer(self, i: int) -> bool:
        if self.moe is None or i < self.dense_layers:
            return False
        return (i - self.dense_layers) % self.moe.layer_every == self.moe.layer_every - 1

    @property
    def moe_layers(self) -> int:
        return sum(self._is_moe_layer(i) for i in range(self.layers))

    @property
    def attn_params_per_layer(self) -> int:
        if self.attn_params_override is not None:  # e.g. MLA's low-rank projections
            return self.attn_params_override
        kv_dim = self.kv_heads * self.head_dim
        return self.hidden * (self.q_dim + 2 * kv_dim) + self.q_dim * self.hidden

    @property
    def routed_expert_params(self) -> float:
        """Parameters of all routed experts (the part expert parallelism shards)."""
        if self.moe is None:
            return 0.0
        return float(self.moe_layers * self.moe.experts * self.expert_params)

    @property
    def expert_params(self) -> int:
        """Parameters of one expert (gated MLP: three matrices)."""
        assert self.moe is not None
        return 3 * self.hidden * self.moe.expert_ffn

    def _param_totals(self) -> tuple[float, float]:
        dense_mlp = 3 * self.hidden * self.ffn
        total = active = 2.0 * self.vocab * self.hidden  # input embedding + output head
        for i in range(self.layers):
            total += self.attn_params_per_layer
            active += self.attn_params_per_layer
            if self._is_moe_layer(i):
                assert self.moe is not None
                n_all = self.moe.experts + self.moe.shared_experts
                n_act = self.moe.active_experts + self.moe.shared_experts
                total += n_all * self.expert_params
                active += n_act * self.expert_params
            else:
                total += dense_mlp
                active += dense_mlp
        return total, active

    @property
    def params(self) -> float:
        return self._param_totals()[0]

    @property
    def active_params(self) -> float:
        return self._param_totals()[1]

    @property
    def kv_bytes_per_token(self) -> int:
        return int(self.layers * self.kv_elements_per_token_per_layer * DTYPE_BYTES[self.kv_dtype])

    def weight_bytes(self, dtype: str | None = None) -> float:
        return self.params * DTYPE_BYTES[dtype or self.dtype]


def parse_llm(spec: LLMModelFile, path: Path) -> LLMModel:
    """Build an LLM from its validated file (after `base:` resolution)."""
    r = SourcedReader(path, spec.sources)

    def q(node: Quantity, name: str) -> int:
        return int(r.quantity(node, name, positive=True))

    def optional(node: Quantity | None, name: str) -> int | None:
        return q(node, name) if node is not None else None

    moe = _parse_moe(spec.moe, r, path) if spec.moe is not None else None
    heads = q(spec.heads, "heads")
    kv_heads = q(spec.kv_heads, "kv_heads")
    head_dim = q(spec.head_dim, "head_dim")
    if heads % kv_heads:
        raise field_error(path, "kv_heads", f"must divide heads ({heads})", kv_heads)
    kv_elems = optional(spec.kv_elements_per_token_per_layer, "kv_elements_per_token_per_layer")
    q_dim = optional(spec.q_dim, "q_dim")
    active = (
        r.quantity(spec.active_params_b, "active_params_b", positive=True) * 1e9
        if spec.active_params_b is not None
        else None
    )
    return LLMModel(
        name=spec.name,
        display_name=spec.display_name,
        file=str(path),
        layers=q(spec.layers, "layers"),
        hidden=q(spec.hidden, "hidden"),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        ffn=q(spec.ffn, "ffn"),
        vocab=q(spec.vocab, "vocab"),
        dtype=spec.dtype,
        kv_dtype=spec.kv_dtype,
        moe=moe,
        dense_layers=int(r.quantity(spec.dense_layers, "dense_layers", default=0)),
        kv_elements_per_token_per_layer=kv_elems
        if kv_elems is not None
        else 2 * kv_heads * head_dim,
        q_dim=q_dim if q_dim is not None else heads * head_dim,
        attn_params_override=optional(spec.attn_params_per_layer, "attn_params_per_layer"),
        published_params=r.quantity(spec.params_b, "params_b", positive=True) * 1e9,
        published_active_params=active,
        provenance=r.provenance,
    )


def _parse_moe(m: MoEBlock, r: SourcedReader, path: Path) -> MoE:
    """The `moe:` block of an LLM file: experts, routing skew and capacity limits."""
    moe = MoE(
        experts=int(r.quantity(m.experts, "moe.experts", positive=True)),
        active_experts=int(r.quantity(m.active_experts, "moe.active_experts", positive=True)),
        shared_experts=int(r.quantity(m.shared_experts, "moe.shared_experts")),
        expert_ffn=int(r.quantity(m.expert_ffn, "moe.expert_ffn", positive=True)),
        layer_every=m.moe_layer_every,
        router_skew=r.quantity(m.router_skew, "moe.router_skew", default=0.0, max_value=4),
        capacity_factor=(
            r.quantity(m.capacity_factor, "moe.capacity_factor", positive=True)
            if m.capacity_factor is not None
            else None
        ),
    )
    if moe.active_experts > moe.experts:
        raise field_error(
            path, "moe.active_experts", "more active experts than experts", moe.active_experts
        )
    return moe
