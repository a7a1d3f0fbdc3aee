"""Per-operator times of one transformer layer's token-linear kernels on one TP shard.

The operator names are those of Vidur's profiling tables (``emb``, ``input_layernorm``,
``attn_pre_proj``, ``attn_rope``, ``attn_post_proj``, ``post_attention_layernorm``,
``mlp_up_proj``, ``mlp_act``, ``mlp_down_proj``, ``add``), so the same function both builds the
iteration model (:mod:`mtia_cluster.perf.llm`) and is checked against measurements
(:mod:`mtia_cluster.calibrate`). None of these kernels depends on context length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog.chip import DTYPE_BYTES, Chip
from mtia_cluster.catalog.op_model import OpParams
from mtia_cluster.perf.ops import ACT_BYTES, elementwise_time_s, gemm_time_s

GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = {
    "emb": "emb",
    "input_layernorm": "norm",
    "post_attention_layernorm": "norm",
    "attn_rope": "rope",
    "mlp_act": "act",
    "add": "add",
}
OPS = (*GEMM_OPS, *ELEMENTWISE_OPS)


@dataclass(frozen=True)
class LayerShape:
    """A dense decoder layer's dimensions, unsharded, and its tensor-parallel degree."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    gated: bool
    tp: int
    qkv_out: int | None = None  # QKV projection width when not (heads + 2 kv_heads) x head_dim

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def gemms(self) -> dict[str, tuple[float, float]]:
        """(k, n) of each projection on one shard; m is the token count."""
        qkv = self.qkv_out if self.qkv_out is not None else self.q_dim + 2 * self.kv_dim
        up = (2 if self.gated else 1) * self.ffn
        return {
            "attn_pre_proj": (self.hidden, qkv / self.tp),
            "attn_post_proj": (self.q_dim / self.tp, self.hidden),
            "mlp_up_proj": (self.hidden, up / self.tp),
            "mlp_down_proj": (self.ffn / self.tp, self.hidden),
        }

    def elementwise_bytes(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Bytes each memory-bound kernel reads + writes for `tokens` tokens."""
        h, a = self.hidden, ACT_BYTES
        act_in = 2 if self.gated else 1  # SiLU(gate) * up reads two halves, GELU one
        return {
            "emb": 2.0 * tokens * h * a,  # gather rows + write
            "input_layernorm": 2.0 * tokens * h * a,
            "post_attention_layernorm": 2.0 * tokens * h * a,
            "attn_rope": 2.0 * tokens * (self.q_dim + self.kv_dim) / self.tp * a,
            "mlp_act": (act_in + 1.0) * tokens * self.ffn / self.tp * a,
            "add": 3.0 * tokens * h * a,  # two reads, one write
        }


def op_times_s(
    shape: LayerShape, tokens: np.ndarray, chip: Chip, dtype: str, params: OpParams | None = None
) -> dict[str, np.ndarray]:
    """Seconds of each operator for `tokens` tokens on one shard of `chip` (GEMMs with the
    family's parameters for `dtype`, :meth:`OpParams.for_dtype`)."""
    p = (params or chip.op_params).for_dtype(dtype)
    t = np.asarray(tokens, dtype=np.float64)
    bw = chip.offchip.bandwidth_bytes_per_s
    out: dict[str, np.ndarray] = {}
    for op, (k, n) in shape.gemms().items():
        out[op] = gemm_time_s(
            t,
            k,
            n,
            peak_flops=chip.gemm_peak(dtype),
            bw_bytes_per_s=bw,
            units=chip.compute_units,
            p=p,
            weight_bytes=DTYPE_BYTES[dtype],
        )
    for op, b in shape.elementwise_bytes(t).items():
        out[op] = elementwise_time_s(b, ELEMENTWISE_OPS[op], bw, p)
    return out
