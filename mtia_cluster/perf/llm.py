"""LLM cost model: time of one serving iteration of a replica, and its KV-cache capacity.

A replica is ``tp x pp`` chips: tensor parallel inside the scale-up domain, pipeline parallel
across stages. One iteration runs ``prefill_tokens`` new prompt tokens (chunked prefill) and
``decode_tokens`` decoding sequences (one token each) through all layers:

* compute: 2 x (active linear parameters) FLOP per token, plus attention 4 x layers x q_dim
  FLOP per (query, key) pair, at the dtype's GEMM peak x efficiency;
* memory: the weights touched (all dense weights; for MoE layers the expected number of
  distinct experts hit by the iteration's tokens under uniform routing) plus the KV cache read
  (``context_tokens`` x KV bytes/token) and written, at off-chip bandwidth x efficiency;
* iteration time = max(compute, memory) + tensor-parallel all-reduces over the scale-up link
  (two per layer, ring algorithm) + pipeline hand-offs + kernel launches.

With ``pp`` stages and no micro-batching, one iteration passes every stage in turn, so its
latency is the sum of the stages: the per-chip work divided by ``tp`` only. All pure and
vectorized over the three token counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog.chip import DTYPE_BYTES, Chip
from mtia_cluster.errors import UserError
from mtia_cluster.workloads.llm import LLMModel

# Fraction of accelerator memory the serving engine may use (vLLM's default
# gpu_memory_utilization = 0.9, https://docs.vllm.ai/en/latest/serving/engine_args.html).
MEMORY_UTILIZATION = 0.9
# Activation/workspace reserve per chip, on top of weights (estimate: vLLM profiles ~1-2 GB).
ACTIVATION_RESERVE_BYTES = 1.5e9
# Kernels launched per transformer layer per iteration (estimate: QKV, attention, out-proj,
# two norms, gate/up, act, down).
KERNELS_PER_LAYER = 8
# Latency of one all-reduce step over the scale-up fabric (estimate: NVLink/PCIe ~5 us).
COLLECTIVE_LATENCY_S = 5e-6


@dataclass(frozen=True)
class LLMIterationModel:
    """Iteration time and KV capacity of one replica of `model` on `tp x pp` `chip`s."""

    chip: Chip
    model: LLMModel
    tp: int
    pp: int
    dtype: str
    kv_dtype: str

    @property
    def chips(self) -> int:
        return self.tp * self.pp

    @property
    def weight_bytes(self) -> float:
        return self.model.params * DTYPE_BYTES[self.dtype]

    @property
    def kv_bytes_per_token(self) -> int:
        m = self.model
        return int(m.layers * m.kv_elements_per_token_per_layer * DTYPE_BYTES[self.kv_dtype])

    @property
    def kv_capacity_tokens(self) -> int:
        """KV tokens the whole replica can hold after weights and reserves."""
        usable = self.chips * (
            self.chip.offchip.capacity_bytes * MEMORY_UTILIZATION - ACTIVATION_RESERVE_BYTES
        )
        return max(0, int((usable - self.weight_bytes) // self.kv_bytes_per_token))

    def _linear_params_per_token(self) -> float:
        """Parameters multiplied per token (active, excluding the input embedding lookup)."""
        return self.model.active_params - self.model.vocab * self.model.hidden

    def _weight_bytes_touched(self, tokens: np.ndarray) -> np.ndarray:
        m = self.model
        wbytes = DTYPE_BYTES[self.dtype]
        if m.moe is None:
            return np.full_like(tokens, self.weight_bytes, dtype=np.float64)
        moe = m.moe
        expert_bytes = m.expert_params * wbytes
        non_expert = self.weight_bytes - m.moe_layers * (moe.experts + moe.shared_experts) * (
            expert_bytes
        )
        # Expected distinct routed experts hit by `tokens` tokens choosing k of E uniformly.
        hit = moe.experts * (1.0 - (1.0 - moe.active_experts / moe.experts) ** tokens)
        return non_expert + m.moe_layers * (hit + moe.shared_experts) * expert_bytes

    def breakdown(
        self,
        prefill_tokens: np.ndarray | float,
        decode_tokens: np.ndarray | float,
        context_tokens: np.ndarray | float,
        attn_pairs: np.ndarray | float | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-part times (s) of one iteration; see :meth:`time_s` for the arguments."""
        m, chip, eff = self.model, self.chip, self.chip.efficiency
        p = np.asarray(prefill_tokens, dtype=np.float64)
        d = np.asarray(decode_tokens, dtype=np.float64)
        ctx = np.asarray(context_tokens, dtype=np.float64)
        pairs = ctx if attn_pairs is None else np.asarray(attn_pairs, dtype=np.float64)
        tokens = p + d
        flops = 2.0 * self._linear_params_per_token() * tokens + 4.0 * m.layers * m.q_dim * pairs
        compute_s = flops / (self.tp * chip.gemm_peak(self.dtype) * eff.gemm)
        kv = self.kv_bytes_per_token
        mem_bytes = self._weight_bytes_touched(tokens) + kv * (ctx + tokens)
        memory_s = mem_bytes / (
            self.tp * chip.offchip.bandwidth_bytes_per_s * eff.offchip_stream * eff.ecc_throughput
        )
        act_bytes = tokens * m.hidden * DTYPE_BYTES["bf16"]
        comm_s = np.zeros_like(tokens)
        if self.tp > 1:
            ring = 2.0 * (self.tp - 1) / self.tp * act_bytes / chip.scale_up_bytes_per_s
            comm_s = 2 * m.layers * (COLLECTIVE_LATENCY_S + ring)
        if self.pp > 1:
            link = (
                chip.scale_up_bytes_per_s
                if self.chips <= chip.scale_up_domain
                else (chip.scale_out_bytes_per_s)
            )
            comm_s = comm_s + (self.pp - 1) * (COLLECTIVE_LATENCY_S + act_bytes / link)
        overhead_s = np.full_like(tokens, m.layers * KERNELS_PER_LAYER * chip.launch_overhead_s)
        return {
            "compute_s": compute_s,
            "memory_s": memory_s,
            "comm_s": comm_s,
            "overhead_s": overhead_s,
        }

    def time_s(
        self,
        prefill_tokens: np.ndarray | float,
        decode_tokens: np.ndarray | float,
        context_tokens: np.ndarray | float,
        attn_pairs: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Seconds for one iteration.

        prefill_tokens: new prompt tokens computed this iteration (all chunks together).
        decode_tokens: sequences decoding one token each.
        context_tokens: KV tokens read by attention, summed over the batch's sequences.
        attn_pairs: (query, key) pairs for attention FLOPs; defaults to `context_tokens`, which
            is exact for decode; pass sum(chunk x (prior + chunk / 2)) for long prefills.
        """
        parts = self.breakdown(prefill_tokens, decode_tokens, context_tokens, attn_pairs)
        return (
            np.maximum(parts["compute_s"], parts["memory_s"])
            + parts["comm_s"]
            + parts["overhead_s"]
        )

    def bound(self, prefill_tokens: float, decode_tokens: float, context_tokens: float) -> str:
        """'compute', 'hbm'/'lpddr', or 'scale-up' for one iteration shape."""
        parts = {
            k: float(v)
            for k, v in self.breakdown(prefill_tokens, decode_tokens, context_tokens).items()
        }
        mem = "lpddr" if self.chip.offchip.kind.startswith("lpddr") else "hbm"
        names = {
            "compute_s": "compute",
            "memory_s": mem,
            "comm_s": "scale-up",
            "overhead_s": "launch",
        }
        return names[max(parts, key=lambda k: parts[k])]


def llm_iteration_model(
    chip: Chip,
    model: LLMModel,
    tp: int = 1,
    pp: int = 1,
    dtype: str | None = None,
    kv_dtype: str | None = None,
) -> LLMIterationModel:
    """Build the iteration model, checking that the replica is possible at all."""
    if model.kind != "llm":
        raise UserError("not an LLM", field="model", value=model.name)
    if tp < 1 or pp < 1:
        raise UserError("tp and pp must be >= 1", field="tp/pp", value=(tp, pp))
    if tp > chip.scale_up_domain:
        raise UserError(
            f"tensor parallelism exceeds {chip.name}'s scale-up domain ({chip.scale_up_domain})",
            field="tp",
            value=tp,
        )
    dtype = dtype or model.dtype
    chip.gemm_peak(dtype)
    if kv_dtype is None:
        kv_dtype = dtype if DTYPE_BYTES[dtype] < DTYPE_BYTES[model.kv_dtype] else model.kv_dtype
    it = LLMIterationModel(chip, model, tp, pp, dtype, kv_dtype)
    if it.kv_capacity_tokens < 1:
        need = it.weight_bytes / (chip.offchip.capacity_bytes * MEMORY_UTILIZATION)
        raise UserError(
            f"{model.name} ({it.weight_bytes / 1e9:.0f} GB at {dtype}) does not fit "
            f"in {tp * pp} x {chip.name}; needs about {need:.1f} chips' memory",
            field="tp",
            value=tp,
        )
    return it
