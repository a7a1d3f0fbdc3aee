"""Iteration time of an LLM replica as an exact integer function (attoseconds).

The cost model (:mod:`mtia_cluster.perf.llm`) gives one iteration's time as
``max(compute_s, memory_s) + other`` where, for a fixed number of tokens in the batch,
``compute_s`` is linear in the attention (query, key) pairs and ``memory_s`` is linear in the
context (KV tokens read). The scheduler needs that time millions of times, and its fast path
needs *sums* of it over many decode iterations in closed form. Calling the vectorized model
once per iteration costs ~70 us; so :class:`IterationCost` probes the model once, per token
count ``T = prefill + decode`` up to the token budget, for four integers (attoseconds):

    duration_as = max(CT[T] + CP * pairs, MT[T] + MC * context) + ET[T]

Integers make every sum exact (the fast path and the one-iteration-at-a-time reference give
bit-identical clocks) and an attosecond grid keeps the rounding error below 1e-7 (typically
1e-10) of an iteration. Construction checks this form against ``time_s`` at random shapes and
refuses a model that is not of this form (for example one whose cost depends on prefill and
decode tokens differently), rather than silently simulating something else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mtia_cluster.engine.rng import StreamKind, entity_rng

AS_PER_NS = 1_000_000_000  # attoseconds per nanosecond
AS_PER_S = 10**18
_PROBE_PAIRS = 1e9  # large probe so the slope is read with ~1e-7 relative precision or better
_CHECK_REL_TOL = 1e-7  # structural mismatches are orders larger; slope rounding ~1e-10


class IterationModel(Protocol):
    """What the scheduler needs from the cost model (``perf.llm.LLMIterationModel``)."""

    @property
    def kv_capacity_tokens(self) -> int: ...

    @property
    def kv_bytes_per_token(self) -> int: ...

    def breakdown(
        self, prefill_tokens: Any, decode_tokens: Any, context_tokens: Any, attn_pairs: Any = None
    ) -> dict[str, np.ndarray]: ...

    def time_s(
        self, prefill_tokens: Any, decode_tokens: Any, context_tokens: Any, attn_pairs: Any = None
    ) -> np.ndarray: ...


def _to_as(seconds: np.ndarray) -> list[int]:
    """Seconds -> integer attoseconds (nearest), as Python ints."""
    return [round(float(s) * AS_PER_S) for s in np.asarray(seconds, dtype=np.float64)]


@dataclass(frozen=True)
class IterationCost:
    """Integer iteration-time coefficients for token counts 0..max_tokens (see module doc)."""

    max_tokens: int
    compute_base_as: tuple[int, ...]  # CT[T]
    compute_per_pair_as: int  # CP
    memory_base_as: tuple[int, ...]  # MT[T]
    memory_per_context_as: int  # MC
    other_as: tuple[int, ...]  # ET[T]: collectives, launches, ...
    # NT[T]: the part of ET[T] spent on the scale-out fabric (empty: none; set by
    # engine/fabric/cells.py for a replica spanning scale-up domains; per-request network_ns)
    network_as: tuple[int, ...] = ()

    def timing_as(self, tokens: int, context: int, pairs: int) -> tuple[int, bool]:
        """Attoseconds of one iteration with `tokens` new tokens (prefill + decode), and
        whether it is memory-bound (its memory time at least its compute time: the power the
        accelerators draw while it runs, cost/power.py), from one evaluation of its parts."""
        compute = self.compute_base_as[tokens] + self.compute_per_pair_as * pairs
        memory = self.memory_base_as[tokens] + self.memory_per_context_as * context
        bound = memory >= compute
        return (memory if bound else compute) + self.other_as[tokens], bound

    def duration_as(self, tokens: int, context: int, pairs: int) -> int:
        """Attoseconds of one iteration (`timing_as`)."""
        return self.timing_as(tokens, context, pairs)[0]

    def memory_bound(self, tokens: int, context: int, pairs: int) -> bool:
        """Whether that iteration is memory-bound (`timing_as`)."""
        return self.timing_as(tokens, context, pairs)[1]


def probe_iteration_cost(model: IterationModel, max_tokens: int, seed: int = 0) -> IterationCost:
    """Read the integer coefficients of `model` for 0..max_tokens tokens and check them."""
    tokens = np.arange(max_tokens + 1, dtype=np.float64)
    zeros = np.zeros_like(tokens)
    base = model.breakdown(tokens, zeros, zeros, zeros)
    slope = model.breakdown(
        np.ones(1), np.zeros(1), np.full(1, _PROBE_PAIRS), np.full(1, _PROBE_PAIRS)
    )
    one = model.breakdown(np.ones(1), np.zeros(1), np.zeros(1), np.zeros(1))
    other = sum(v for k, v in base.items() if k not in ("compute_s", "memory_s"))
    per_pair_s = (float(slope["compute_s"][0]) - float(one["compute_s"][0])) / _PROBE_PAIRS
    per_ctx_s = (float(slope["memory_s"][0]) - float(one["memory_s"][0])) / _PROBE_PAIRS
    cost = IterationCost(
        max_tokens=max_tokens,
        compute_base_as=tuple(_to_as(base["compute_s"])),
        compute_per_pair_as=round(per_pair_s * AS_PER_S),
        memory_base_as=tuple(_to_as(base["memory_s"])),
        memory_per_context_as=round(per_ctx_s * AS_PER_S),
        other_as=tuple(_to_as(np.broadcast_to(other, tokens.shape))),
    )
    check_against_model(cost, model, seed)
    return cost


def check_against_model(cost: IterationCost, model: IterationModel, seed: int = 0) -> None:
    """Raise ValueError unless `cost` reproduces ``model.time_s`` at random shapes."""
    rng = entity_rng(seed, StreamKind.LLM_COST_CHECK)
    n = 256
    total = rng.integers(0, cost.max_tokens + 1, n)
    prefill = rng.integers(0, total + 1)
    decode = total - prefill
    context = rng.integers(0, max(1, model.kv_capacity_tokens) + 1, n)
    pairs = context + rng.integers(0, 4 * cost.max_tokens * cost.max_tokens + 1, n)
    want = np.asarray(model.time_s(prefill, decode, context, pairs), dtype=np.float64)
    got = np.array(
        [
            cost.duration_as(int(t), int(c), int(p)) / AS_PER_S
            for t, c, p in zip(total, context, pairs, strict=True)
        ]
    )
    err = np.abs(got - want) / np.maximum(want, 1e-30)
    if not np.all(err <= _CHECK_REL_TOL) or not np.all(want > 0):
        worst = int(np.argmax(err))
        raise ValueError(
            "LLM iteration model is not of the form max(compute(tokens) + a*pairs, "
            "memory(tokens) + b*context) + other(tokens): at prefill="
            f"{prefill[worst]}, decode={decode[worst]}, context={context[worst]} it gives "
            f"{want[worst]:.6g} s, the integer form {got[worst]:.6g} s"
        )
