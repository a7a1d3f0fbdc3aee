"""The scale-out part of an LLM iteration's time, per token count (per-request network_ns).

An LLM replica larger than its chip's scale-up domain sends over the scale-out fabric every
iteration: the pipeline's activations between stages (``pp - 1`` send/recv of one EP
group's activations) when the replica spans domains, and the MoE dispatch + combine
all-to-alls when its ``tp x ep`` group does (perf/llm.py ``_comm_s`` has both terms; the TP
all-reduce stays on scale-up). :func:`network_table` gives that part in integer attoseconds
for every token count up to the cost table's budget; the scheduler adds it to a network
clock per iteration, and a request's ``network_ns`` is the clock's advance while it was
admitted (engine/llm/scheduler.py; docs/network.md, "Per-request network time").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtia_cluster.perf.moe import moe_all_to_all_s
from mtia_cluster.perf.ops import ACT_BYTES, send_recv_time_s

AS_PER_S = 10**18


def scale_out_comm_s(it: Any, tokens: np.ndarray) -> np.ndarray:
    """Seconds of one iteration of `tokens` tokens spent on scale-out transfers, for the
    iteration model `it` (perf.llm.LLMIterationModel) at its chip's scale-out figure."""
    chip, p = it.chip, it.chip.op_params
    t = np.asarray(tokens, dtype=np.float64)
    out = np.zeros_like(t)
    if it.ep > 1 and it.tp * it.ep > chip.scale_up_domain:
        link = chip.scale_out_bytes_per_s
        out = out + it.model.moe_layers * moe_all_to_all_s(t, it.moe_layer, link, p.send_recv_out)
    if it.pp > 1 and it.chips > chip.scale_up_domain:
        act = t / it.ep * it.model.hidden * ACT_BYTES
        out = out + (it.pp - 1) * send_recv_time_s(act, chip.scale_out_bytes_per_s, p.send_recv_out)
    return out


def network_table(it: Any, max_tokens: int) -> tuple[int, ...]:
    """:func:`scale_out_comm_s` for 0..max_tokens tokens, integer attoseconds (nearest)."""
    seconds = scale_out_comm_s(it, np.arange(max_tokens + 1, dtype=np.float64))
    return tuple(round(float(s) * AS_PER_S) for s in seconds)
