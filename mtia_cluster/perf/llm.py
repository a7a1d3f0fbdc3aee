"""LLM cost model: time of one serving iteration of a replica, and its KV-cache capacity.

A replica is ``tp x pp`` chips: tensor parallel inside the scale-up domain, pipeline parallel
across stages. One iteration runs ``prefill_tokens`` new prompt tokens (chunked prefill) and
``decode_tokens`` decoding sequences (one token each), T tokens in all, through every layer,
as the operator kernels of :mod:`mtia_cluster.perf.layer` / :mod:`mtia_cluster.perf.ops`:

* GEMMs (QKV, output projection, MLP up/down; MoE experts per expert hit; the LM head) from
  their shapes per TP shard, wave-quantized over the chip's compute units;
* memory-bound kernels (embedding, norms, rotary, activation, residual adds, KV-cache write,
  sampling) with a launch floor;
* attention as one kernel per layer over the whole mixed batch (FlashAttention-style varlen
  with paged KV, as vLLM and TensorRT-LLM run it): its time is the roofline of that kernel,
  ``max(prefill FLOPs / (peak x attn_prefill_peak_fraction), KV bytes read / (BW x
  attn_decode_bw_fraction) + layers x attn_floor_s)`` -- ``compute_s`` and ``memory_s`` of
  :meth:`breakdown` (the floor: the kernel's fixed time per layer, measured on Vidur's A100
  decode-attention rows, docs/validation.md "Decode attention against Vidur's attention
  profiles"). Prefill FLOPs are 4 x q_dim per (query, key) pair (causal pairs); KV bytes are
  the context tokens read x KV bytes per token per shard (GQA: kv_heads split over at most
  kv_heads shards);
* tensor-parallel all-reduces (two per layer and one for the vocab-parallel embedding) and
  pipeline hand-offs as latency + size / achieved bandwidth;
* one per-iteration host overhead (scheduler, input preparation).

Overlap rule: kernels on a GPU stream run one after another and the serving stacks modelled
here do not overlap communication with compute, so everything except the two sides of the
attention kernel adds up. With ``pp`` stages and no micro-batching one iteration passes every
stage in turn, so its latency is the sum over stages. All pure and vectorized over the three
token counts; the form ``max(a(T) + b x pairs, c(T) + d x context) + e(T)`` (with a = c = 0)
is what the engine's integer cost tables (``engine/llm/costs.py``) require.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog.chip import DTYPE_BYTES, Chip
from mtia_cluster.catalog.op_model import OpParams
from mtia_cluster.errors import UserError
from mtia_cluster.perf.layer import GEMM_OPS, LayerShape, op_times_s
from mtia_cluster.perf.moe import (
    MoELayer,
    act_bytes,
    check_ep,
    moe_all_to_all_s,
    moe_gemm_s,
    permute_bytes,
)
from mtia_cluster.perf.ops import (
    ACT_BYTES,
    GemmEnv,
    all_reduce_time_s,
    elementwise_time_s,
    gemm_time_s,
    send_recv_time_s,
)
from mtia_cluster.workloads.llm import LLMModel

# Fraction of accelerator memory the serving engine may use (vLLM's default
# gpu_memory_utilization = 0.9, https://docs.vllm.ai/en/latest/serving/engine_args.html).
MEMORY_UTILIZATION = 0.9
# Activation/workspace reserve per chip, on top of weights (estimate: vLLM profiles ~1-2 GB).
ACTIVATION_RESERVE_BYTES = 1.5e9
LOGIT_BYTES = 4.0  # FP32 logits read by the sampler
ATTN_DTYPE = "fp16"  # attention math runs on 16-bit tensor cores (attention_peak_flops)


@dataclass(frozen=True)
class LLMIterationModel:
    """Iteration time and KV capacity of one replica of `model` on `tp x pp` `chip`s."""

    chip: Chip
    model: LLMModel
    tp: int
    pp: int
    dtype: str
    kv_dtype: str
    ep: int = 1  # expert-parallel groups of tp chips per stage (perf/moe.py)

    @property
    def chips(self) -> int:
        return self.tp * self.ep * self.pp

    @property
    def weight_bytes(self) -> float:
        """Weights of the whole replica: each EP group holds the non-expert weights, the
        routed experts are split over the groups."""
        routed = self.model.routed_expert_params
        return ((self.model.params - routed) * self.ep + routed) * DTYPE_BYTES[self.dtype]

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

    def kv_tokens_of_free_memory(self, fraction: float) -> int:
        """KV tokens under TensorRT-LLM's rule instead of vLLM's: `fraction`
        (``kv_cache_free_gpu_mem_fraction``) of the memory left free once the weights and
        the activation reserve are allocated. The TensorRT-LLM perf-overview runs use 0.99
        (v0.11.0 / v0.13.0) and 0.95 "in many cases" (2025, the default being 0.90); with
        weights near capacity the two rules differ several-fold (docs/validation.md,
        "Held-out GPUs")."""
        free = self.chips * (self.chip.offchip.capacity_bytes - ACTIVATION_RESERVE_BYTES)
        return max(0, int(fraction * (free - self.weight_bytes) // self.kv_bytes_per_token))

    def kv_tokens(self, kv_free_fraction: float | None = None) -> int:
        """KV tokens of the replica: the catalog's rule (`kv_capacity_tokens`), or
        TensorRT-LLM's (`kv_tokens_of_free_memory`) when `kv_free_fraction` is given."""
        if kv_free_fraction is None:
            return self.kv_capacity_tokens
        return self.kv_tokens_of_free_memory(kv_free_fraction)

    def _shape(self, ffn: int) -> LayerShape:
        m = self.model
        qkv = None
        if m.attn_params_override is not None:  # e.g. MLA: all non-output projections
            qkv = int(m.attn_params_override / m.hidden - m.q_dim)
        return LayerShape(m.hidden, m.heads, m.kv_heads, m.head_dim, ffn, True, self.tp, qkv)

    @property
    def gemm_params(self) -> OpParams:
        """The family's parameters with the GEMM efficiency measured for this dtype."""
        return self.chip.op_params.for_dtype(self.dtype)

    @property
    def gemm_env(self) -> GemmEnv:
        return GemmEnv(
            self.chip.gemm_peak(self.dtype),
            self.chip.offchip.bandwidth_bytes_per_s,
            self.chip.compute_units,
            self.gemm_params,
            DTYPE_BYTES[self.dtype],
        )

    def _gemm(self, m: np.ndarray, k: float, n: float) -> np.ndarray:
        return gemm_time_s(
            m,
            k,
            n,
            peak_flops=self.chip.gemm_peak(self.dtype),
            bw_bytes_per_s=self.chip.offchip.bandwidth_bytes_per_s,
            units=self.chip.compute_units,
            p=self.gemm_params,
            weight_bytes=DTYPE_BYTES[self.dtype],
        )

    def _layers_s(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(GEMM seconds, memory-bound kernel seconds) of all layers for `t` replica tokens
        (dense parts on one EP group's ``t / ep`` tokens, MoE layers by perf/moe.py)."""
        m = self.model
        tg = t / self.ep
        dense = op_times_s(self._shape(m.ffn), tg, self.chip, self.dtype)
        gemm_dense = np.sum([dense[op] for op in GEMM_OPS], axis=0)
        elem_ops = [v for op, v in dense.items() if op not in GEMM_OPS and op != "emb"]
        elem_dense = np.sum(elem_ops, axis=0) + dense["add"]  # two residual adds per layer
        n_moe = m.moe_layers
        gemm = (m.layers - n_moe) * gemm_dense
        elem = (m.layers - n_moe) * elem_dense
        if n_moe:
            attn = dense["attn_pre_proj"] + dense["attn_post_proj"]
            gemm = gemm + n_moe * (attn + moe_gemm_s(t, self.moe_layer, self.gemm_env))
            elem = elem + n_moe * (elem_dense - dense["mlp_act"] + self._moe_elem_s(t))
        return gemm, elem

    def _moe_elem_s(self, t: np.ndarray) -> np.ndarray:
        """Memory-bound kernels of one MoE layer beyond attention's: permute + unpermute and
        the experts' activation over their routed (and shared) rows, not the dense ``ffn``."""
        bw, p = self.chip.offchip.bandwidth_bytes_per_s, self.chip.op_params
        permute = elementwise_time_s(permute_bytes(t, self.moe_layer), "add", bw, p)
        return permute + elementwise_time_s(act_bytes(t, self.moe_layer), "act", bw, p)

    @property
    def moe_layer(self) -> MoELayer:
        moe = self.model.moe
        assert moe is not None
        return MoELayer(
            self.model.hidden,
            moe.experts,
            moe.active_experts,
            moe.shared_experts,
            moe.expert_ffn,
            self.tp,
            self.ep,
            moe.router_skew,
            moe.capacity_factor,
        )

    def _edges_s(self, t: np.ndarray) -> np.ndarray:
        """Embedding, final norm, LM head, KV-cache writes and sampling (once per token)."""
        m, p = self.model, self.chip.op_params
        bw = self.chip.offchip.bandwidth_bytes_per_s
        emb = elementwise_time_s(2.0 * t * m.hidden * ACT_BYTES, "emb", bw, p)
        norm = elementwise_time_s(2.0 * t * m.hidden * ACT_BYTES, "norm", bw, p)
        t = t / self.ep  # each EP group embeds, samples and writes KV for its own tokens
        head = self._gemm(t, m.hidden, m.vocab / self.tp)
        kv_shards = min(self.tp, m.kv_heads)
        kv_write = m.layers * elementwise_time_s(
            t * m.kv_elements_per_token_per_layer / kv_shards * (ACT_BYTES + self.kv_elem_bytes),
            "add",
            bw,
            p,
        )
        sample = elementwise_time_s(t * m.vocab / self.tp * LOGIT_BYTES, "add", bw, p)
        return emb + norm + head + kv_write + sample

    @property
    def kv_elem_bytes(self) -> float:
        return DTYPE_BYTES[self.kv_dtype]

    def _comm_s(self, t: np.ndarray) -> np.ndarray:
        chip, p = self.chip, self.chip.op_params
        act = t / self.ep * self.model.hidden * ACT_BYTES  # one EP group's activations
        comm = np.zeros_like(t)
        if self.tp > 1:
            per = all_reduce_time_s(act, self.tp, chip.scale_up_bytes_per_s, p.all_reduce_up)
            comm = comm + (2 * self.model.layers + 1) * per
        if self.ep > 1:
            up = self.tp * self.ep <= chip.scale_up_domain
            link = chip.scale_up_bytes_per_s if up else chip.scale_out_bytes_per_s
            a2a = moe_all_to_all_s(
                t, self.moe_layer, link, p.send_recv_up if up else p.send_recv_out
            )
            comm = comm + self.model.moe_layers * a2a
        if self.pp > 1:
            up = self.chips <= chip.scale_up_domain
            link = chip.scale_up_bytes_per_s if up else chip.scale_out_bytes_per_s
            c = p.send_recv_up if up else p.send_recv_out
            comm = comm + (self.pp - 1) * send_recv_time_s(act, link, c)
        return comm

    def _attention_s(self, ctx: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, chip, p = self.model, self.chip, self.chip.op_params
        ctx, pairs = ctx / self.ep, pairs / self.ep  # attention is data-parallel over groups
        flops = 4.0 * m.layers * m.q_dim / self.tp * pairs
        compute = flops / (self.attention_peak_flops * p.attn_prefill_peak_fraction)
        kv_bytes = m.layers * m.kv_elements_per_token_per_layer * self.kv_elem_bytes
        kv_bytes_shard = kv_bytes / min(self.tp, m.kv_heads)
        memory = m.layers * p.attn_floor_s + ctx * kv_bytes_shard / (
            chip.offchip.bandwidth_bytes_per_s * p.attn_decode_bw_fraction
        )
        return compute, memory

    @property
    def attention_peak_flops(self) -> float:
        """Peak of the attention kernel's math: 16-bit even for FP8 weights and KV (the
        MLPerf v4.1 TensorRT-LLM engines build ``--gpt_attention_plugin=float16``; FP8 context
        FMHA is a separate opt-in; FlashAttention-2 is 16-bit), never above the model dtype's."""
        peak = self.chip.gemm_peak(self.dtype)
        if ATTN_DTYPE in self.chip.gemm_dense_flops:
            peak = min(peak, self.chip.gemm_peak(ATTN_DTYPE))
        return peak

    def breakdown(
        self,
        prefill_tokens: np.ndarray | float,
        decode_tokens: np.ndarray | float,
        context_tokens: np.ndarray | float,
        attn_pairs: np.ndarray | float | None = None,
    ) -> dict[str, np.ndarray]:
        """Per-part times (s) of one iteration; see :meth:`time_s` for the arguments.

        ``compute_s`` / ``memory_s`` are the attention kernel's FLOP and KV-read sides (the
        only parts that overlap); the rest add up.
        """
        p = np.asarray(prefill_tokens, dtype=np.float64)
        d = np.asarray(decode_tokens, dtype=np.float64)
        ctx = np.asarray(context_tokens, dtype=np.float64)
        pairs = ctx if attn_pairs is None else np.asarray(attn_pairs, dtype=np.float64)
        t = p + d
        gemm, elem = self._layers_s(t)
        compute, memory = self._attention_s(ctx, pairs)
        overhead = np.full_like(t, self.chip.op_params.iteration_overhead_s)
        return {
            "compute_s": compute + 0.0 * t,
            "memory_s": memory + 0.0 * t,
            "gemm_s": gemm,
            "elementwise_s": elem + self._edges_s(t),
            "comm_s": self._comm_s(t),
            "overhead_s": overhead,
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
        attention = np.maximum(parts.pop("compute_s"), parts.pop("memory_s"))
        return attention + sum(parts.values())

    def bound(self, prefill_tokens: float, decode_tokens: float, context_tokens: float) -> str:
        """What dominates one iteration: 'compute', 'hbm'/'lpddr', 'scale-up' or 'launch'.

        GEMM time is attributed to compute and memory in proportion to their roofline demands
        (FLOPs at peak vs weight bytes at bandwidth): near the ridge point both matter.
        """
        parts = {
            k: float(v)
            for k, v in self.breakdown(prefill_tokens, decode_tokens, context_tokens).items()
        }
        t = float(prefill_tokens) + float(decode_tokens)
        flop_s = (
            2.0
            * t
            * self._linear_params_per_token()
            / (self.tp * self.ep * self.chip.gemm_peak(self.dtype))
        )
        weight_s = self.weight_bytes / (
            self.chips / self.pp * self.chip.offchip.bandwidth_bytes_per_s
        )
        gemm_compute = parts["gemm_s"] * flop_s / max(flop_s + weight_s, 1e-30)
        mem = "lpddr" if self.chip.offchip.kind.startswith("lpddr") else "hbm"
        totals = {
            "compute": parts["compute_s"] + gemm_compute,
            mem: parts["memory_s"] + parts["elementwise_s"] + parts["gemm_s"] - gemm_compute,
            "scale-up": parts["comm_s"],
            "launch": parts["overhead_s"],
        }
        return max(totals, key=lambda k: totals[k])

    def _linear_params_per_token(self) -> float:
        """Parameters multiplied per token (active, excluding the input embedding lookup)."""
        return self.model.active_params - self.model.vocab * self.model.hidden


def llm_iteration_model(
    chip: Chip,
    model: LLMModel,
    tp: int = 1,
    pp: int = 1,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    ep: int = 1,
    kv_free_fraction: float | None = None,
) -> LLMIterationModel:
    """Build the iteration model, checking that the replica is possible at all: that its KV
    cache holds a token under the catalog's rule, or under TensorRT-LLM's
    (``kv_tokens_of_free_memory``) when `kv_free_fraction` is given."""
    _check_ep(model, ep)
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
    why = check_tp(model, tp)
    if why is not None:
        raise UserError(why, field="tp", value=tp)
    dtype = dtype or model.dtype
    chip.gemm_peak(dtype)
    if kv_dtype is None:
        kv_dtype = dtype if DTYPE_BYTES[dtype] < DTYPE_BYTES[model.kv_dtype] else model.kv_dtype
    it = LLMIterationModel(chip, model, tp, pp, dtype, kv_dtype, ep)
    if it.kv_tokens(kv_free_fraction) < 1:
        need = it.weight_bytes / (chip.offchip.capacity_bytes * MEMORY_UTILIZATION)
        raise UserError(
            f"{model.name} ({it.weight_bytes / 1e9:.0f} GB at {dtype}) does not fit "
            f"in {it.chips} x {chip.name}; needs about {need:.1f} chips' memory",
            field="tp",
            value=tp,
        )
    return it


def check_tp(model: LLMModel, tp: int) -> str | None:
    """Why `tp` cannot shard `model`'s attention, or None. As vLLM requires, the query heads
    split evenly over the `tp` shards, and the KV heads either split evenly (tp <= kv_heads)
    or are replicated a whole number of times (tp a multiple of kv_heads)."""
    if model.heads % tp:
        return f"must divide {model.name}'s {model.heads} attention heads"
    if tp <= model.kv_heads and model.kv_heads % tp:
        return f"must divide {model.name}'s {model.kv_heads} KV heads"
    if tp > model.kv_heads and tp % model.kv_heads:
        return f"must be a multiple of {model.name}'s {model.kv_heads} KV heads"
    return None


def _check_ep(model: LLMModel, ep: int) -> None:
    """Expert parallelism needs a MoE model whose experts split evenly over `ep` groups."""
    if ep == 1:
        return
    if model.moe is None:
        raise UserError(f"{model.name} has no experts to shard", field="ep", value=ep)
    why = check_ep(model.moe.experts, ep)
    if why is not None:
        raise UserError(why, field="ep", value=ep)
