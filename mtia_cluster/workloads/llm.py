"""Large language models (dense and MoE) as data, with derived parameter and KV sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtia_cluster.catalog.chip import DTYPE_BYTES
from mtia_cluster.catalog.quantity import Provenance, SourcedReader, read_sources
from mtia_cluster.config import Fields


@dataclass(frozen=True)
class MoE:
    """Mixture-of-experts structure of the MoE layers."""

    experts: int
    active_experts: int
    shared_experts: int
    expert_ffn: int
    layer_every: int  # every n-th layer is MoE (1 = all, after `dense_layers`)


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


def parse_llm(data: dict, path: Path) -> LLMModel:
    """Parse an LLM mapping (after `base:` resolution)."""
    f = Fields(data, path)
    r = SourcedReader(f, read_sources(f))

    def q(key: str, fields: Fields = f) -> int:
        return int(r.quantity(fields, key, positive=True))

    moe = None
    if f.has("moe"):
        m = f.sub("moe")
        moe = MoE(
            experts=q("experts", m),
            active_experts=q("active_experts", m),
            shared_experts=int(r.quantity(m, "shared_experts")),
            expert_ffn=q("expert_ffn", m),
            layer_every=m.int("moe_layer_every", 1, positive=True),
        )
        if moe.active_experts > moe.experts:
            raise m.error("active_experts", "more active experts than experts", moe.active_experts)
    heads, kv_heads, head_dim = q("heads"), q("kv_heads"), q("head_dim")
    if heads % kv_heads:
        raise f.error("kv_heads", f"must divide heads ({heads})", kv_heads)
    kv_elems = (
        int(r.quantity(f, "kv_elements_per_token_per_layer", positive=True))
        if f.has("kv_elements_per_token_per_layer")
        else 2 * kv_heads * head_dim
    )
    q_dim = int(r.quantity(f, "q_dim", positive=True)) if f.has("q_dim") else heads * head_dim
    active = (
        r.quantity(f, "active_params_b", positive=True) * 1e9 if f.has("active_params_b") else None
    )
    return LLMModel(
        name=f.str("name"),
        display_name=f.str("display_name"),
        file=str(path),
        layers=q("layers"),
        hidden=q("hidden"),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        ffn=q("ffn"),
        vocab=q("vocab"),
        dtype=f.str("dtype", choices=DTYPE_BYTES),
        kv_dtype=f.str("kv_dtype", choices=DTYPE_BYTES),
        moe=moe,
        dense_layers=int(r.quantity(f, "dense_layers", default=0)),
        kv_elements_per_token_per_layer=kv_elems,
        q_dim=q_dim,
        attn_params_override=(
            q("attn_params_per_layer") if f.has("attn_params_per_layer") else None
        ),
        published_params=r.quantity(f, "params_b", positive=True) * 1e9,
        published_active_params=active,
        provenance=r.provenance,
    )
