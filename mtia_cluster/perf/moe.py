"""Cost terms of one mixture-of-experts (MoE) layer, with expert parallelism.

A replica with expert-parallel degree ``ep`` is ``ep`` groups of ``tp`` chips (per pipeline
stage). Attention and the dense parts run data-parallel over the groups, each on ``1/ep`` of
the iteration's tokens (DeepSeek-V3's serving layout: DP attention, EP experts,
https://arxiv.org/abs/2412.19437 §3.4); the routed experts are spread over the groups (expert
``e`` on group ``e % ep``, experts ranked by popularity) and each expert's weights are
tensor-parallel over its group's ``tp`` chips. Per MoE layer, for ``n`` tokens in the whole
replica:

* **router**: one ``tokens x hidden @ hidden x experts`` GEMM per group (its own tokens);
* **routing**: a token picks expert ``e`` with probability ``q_e`` (``sum q_e = top_k``).
  ``skew`` is the Zipf exponent of expert popularity (``p_e ~ rank^-skew``; 0 = uniform, the
  default), and ``q_e = top_k x p_e`` capped at 1 (the excess goes to the others). Tokens route
  independently, so expert ``e`` receives at least one of ``n`` tokens with probability
  ``h_e = 1 - (1 - q_e)^n`` and, when it does, ``n q_e / h_e`` tokens on average;
* **experts**: a group runs its experts as two grouped GEMMs (gate + up, down; ops.py
  ``grouped_gemm_time_s``): expert e contributes, with probability ``h_e``, its tiles and its
  operand bytes (its weights are read once) -- experts that receive no token cost nothing;
  the layer waits for the busiest group. Their compute side runs at the dense GEMM peak
  fraction x the family's ``moe.expert_gemm_peak_scale`` (:func:`expert_env`; fitted on
  TensorRT-LLM's published Mixtral throughputs, planning/trtllm_overview.py): the serving
  stacks' MoE kernels fall short of their dense GEMMs;
* **capacity**: with a ``capacity_factor`` c (GShard/Switch), an expert computes at most
  ``ceil(c n top_k / experts)`` tokens (the rest are dropped); None = dropless, as vLLM and
  TensorRT-LLM serve;
* **shared experts** run on every token of each group;
* **activation**: SiLU(gate) x up runs on every routed row of the busiest group plus the
  shared experts' rows (``act_bytes``), ``expert_ffn / tp`` wide;
* **permute / unpermute**: gathering each token's ``top_k`` copies into expert order and
  the weighted sum back are memory-bound kernels moving ``tokens x top_k x hidden``
  activations, read and written, each way (``permute_bytes``);
* **all-to-all**: with ``ep > 1`` each group sends its tokens' ``top_k`` copies of the hidden
  state to the experts' groups and gets them back (dispatch and combine): per group
  ``n / ep x top_k x hidden x bytes x (ep - 1) / ep`` each way, split over the group's
  ``tp`` chips' links, as a point-to-point transfer (latency + bytes / achieved
  bandwidth) over the scale-up domain when the replica's stage fits in it, else over
  scale-out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mtia_cluster.catalog.op_model import Collective
from mtia_cluster.perf.ops import (
    ACT_BYTES,
    GemmEnv,
    gemm_time_s,
    grouped_gemm_time_s,
    send_recv_time_s,
)


@dataclass(frozen=True)
class MoELayer:
    """One MoE layer's routing and sharding (unsharded dimensions)."""

    hidden: int
    experts: int
    top_k: int
    shared: int
    expert_ffn: int
    tp: int = 1
    ep: int = 1
    skew: float = 0.0
    capacity_factor: float | None = None


def route_probabilities(experts: int, top_k: int, skew: float = 0.0) -> np.ndarray:
    """``q_e``: probability that one token is routed to expert e, most popular first.

    Zipf popularity ``p_e ~ (e + 1)^-skew``; ``q_e = top_k p_e`` with any excess over 1
    handed to the remaining experts in proportion (``sum q_e = top_k`` exactly).
    """
    p = 1.0 / np.arange(1, experts + 1, dtype=np.float64) ** skew
    q = top_k * p / p.sum()
    capped = np.zeros(experts, bool)
    while np.any(q[~capped] > 1.0 + 1e-12):
        capped |= q >= 1.0
        left = top_k - capped.sum()
        free = ~capped
        q = np.where(capped, 1.0, left * p / p[free].sum())
    return np.minimum(q, 1.0)


def hit_probability(tokens: np.ndarray | float, q: np.ndarray) -> np.ndarray:
    """``h[t, e]``: probability that expert e receives at least one of ``tokens[t]`` tokens."""
    n = np.asarray(tokens, dtype=np.float64).reshape(-1, 1)
    return 1.0 - (1.0 - q.reshape(1, -1)) ** n


def expected_experts_hit(tokens: np.ndarray | float, experts: int, top_k: int, skew: float = 0.0):
    """Expected number of distinct experts that receive at least one of `tokens` tokens."""
    return hit_probability(tokens, route_probabilities(experts, top_k, skew)).sum(axis=1)


def all_to_all_bytes(
    tokens: np.ndarray | float, top_k: int, hidden: int, ep: int, tp: int = 1
) -> np.ndarray:
    """Bytes one chip sends in one all-to-all (dispatch or combine) for `tokens` replica
    tokens: its group's ``tokens / ep`` tokens' ``top_k`` hidden states bound for other
    groups, shared by the group's ``tp`` chips (each sends its own slice of the tokens over
    its own link)."""
    t = np.asarray(tokens, dtype=np.float64)
    if ep <= 1:
        return np.zeros_like(t)
    return t / ep * top_k * hidden * ACT_BYTES * (ep - 1) / ep / tp


def permute_bytes(tokens: np.ndarray | float, layer: MoELayer) -> np.ndarray:
    """Bytes of one group's permute + unpermute kernels (read + write, both ways)."""
    t = np.asarray(tokens, dtype=np.float64) / layer.ep
    return 4.0 * t * layer.top_k * layer.hidden * ACT_BYTES


def act_bytes(tokens: np.ndarray | float, layer: MoELayer) -> np.ndarray:
    """Bytes of one MoE layer's gated activation (SiLU(gate) x up: two reads, one write of
    ``expert_ffn / tp`` per row) on the busiest group: every row its routed experts compute
    (``top_k`` per token when uniform) plus the shared experts' rows on its own tokens."""
    t = np.asarray(tokens, dtype=np.float64)
    hit, per = expert_tokens(t.reshape(-1), layer)
    rows = hit * per
    routed = np.max([rows[:, g :: layer.ep].sum(axis=1) for g in range(layer.ep)], axis=0)
    rows_g = routed.reshape(t.shape) + layer.shared * t / layer.ep
    return 3.0 * rows_g * layer.expert_ffn / layer.tp * ACT_BYTES


def expert_tokens(tokens: np.ndarray, layer: MoELayer) -> tuple[np.ndarray, np.ndarray]:
    """(h[t, e], tokens an expert computes when hit [t, e]), capacity applied."""
    q = route_probabilities(layer.experts, layer.top_k, layer.skew)
    n = np.asarray(tokens, dtype=np.float64).reshape(-1, 1)
    hit = hit_probability(n, q)
    per = np.where(hit > 0, n * q / np.maximum(hit, 1e-300), 0.0)
    if layer.capacity_factor is not None:
        cap = np.ceil(layer.capacity_factor * n * layer.top_k / layer.experts)
        per = np.minimum(per, cap)
    return hit, per


def expert_env(env: GemmEnv) -> GemmEnv:
    """`env` for the routed experts' grouped GEMMs: the dense peak fraction times the
    family's ``moe.expert_gemm_peak_scale`` (``OpParams.moe_expert_peak_scale``)."""
    p = env.p
    if p.moe_expert_peak_scale == 1.0:
        return env
    frac = p.gemm_peak_fraction * p.moe_expert_peak_scale
    return replace(env, p=replace(p, gemm_peak_fraction=frac))


def moe_gemm_s(tokens: np.ndarray, layer: MoELayer, env: GemmEnv) -> np.ndarray:
    """GEMM seconds of one MoE layer for `tokens` replica tokens on one chip: router, the
    busiest group's routed experts (two grouped GEMMs: gate + up, down, at
    :func:`expert_env`'s efficiency) and shared experts (dense GEMMs)."""
    t = np.asarray(tokens, dtype=np.float64)
    h, f, tp, ep = layer.hidden, layer.expert_ffn, layer.tp, layer.ep
    tg = t / ep
    hit, per = expert_tokens(t, layer)
    xenv = expert_env(env)
    groups = [
        grouped_gemm_time_s(hit[:, g::ep], per[:, g::ep], h, 2 * f / tp, xenv)
        + grouped_gemm_time_s(hit[:, g::ep], per[:, g::ep], f / tp, h, xenv)
        for g in range(ep)
    ]
    busiest = np.max(groups, axis=0).reshape(t.shape)

    def gemm(m: np.ndarray, k: float, n: float) -> np.ndarray:
        return gemm_time_s(
            m,
            k,
            n,
            peak_flops=env.peak_flops,
            bw_bytes_per_s=env.bw_bytes_per_s,
            units=env.units,
            p=env.p,
            weight_bytes=env.weight_bytes,
        )

    router = gemm(tg, h, layer.experts)
    shared = layer.shared * (gemm(tg, h, 2 * f / tp) + gemm(tg, f / tp, h))
    return router + busiest + shared


def moe_all_to_all_s(
    tokens: np.ndarray, layer: MoELayer, link_bytes_per_s: float, c: Collective
) -> np.ndarray:
    """Seconds of one MoE layer's dispatch + combine all-to-alls (zero without EP)."""
    size = all_to_all_bytes(tokens, layer.top_k, layer.hidden, layer.ep, layer.tp)
    return 2.0 * send_recv_time_s(size, link_bytes_per_s, c)


def check_ep(experts: int, ep: int) -> str | None:
    """Why `ep` cannot shard `experts` experts (None when it can)."""
    if ep < 1:
        return "must be >= 1"
    if experts % ep:
        return f"must divide the model's {experts} experts"
    return None
