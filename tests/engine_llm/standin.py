"""A small roofline iteration model with the cost model's interface, for fast tests.

Same shape as ``perf.llm.LLMIterationModel`` (max(compute, memory) + launch overhead), with
round numbers so that compute- and memory-bound iterations both occur on tiny workloads; and
the shipped prefix-routing scenario with test overrides (``prefix_scenario``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.config.scenario import load_scenario


@dataclass(frozen=True)
class StandInModel:
    """Iteration time = max(compute, memory) + overhead, all linear; KV capacity given."""

    kv_capacity_tokens: int = 4096
    kv_bytes_per_token: int = 1000
    flop_per_token: float = 1.4e10
    flop_per_pair: float = 5e5
    flops: float = 5e14
    weight_bytes: float = 1.4e10
    bandwidth: float = 2e12
    overhead_s: float = 2e-4

    def breakdown(
        self, prefill_tokens: Any, decode_tokens: Any, context_tokens: Any, attn_pairs: Any = None
    ) -> dict[str, np.ndarray]:
        p = np.asarray(prefill_tokens, dtype=np.float64)
        d = np.asarray(decode_tokens, dtype=np.float64)
        ctx = np.asarray(context_tokens, dtype=np.float64)
        pairs = ctx if attn_pairs is None else np.asarray(attn_pairs, dtype=np.float64)
        tokens = p + d
        compute = (self.flop_per_token * tokens + self.flop_per_pair * pairs) / self.flops
        memory = (self.weight_bytes + self.kv_bytes_per_token * (ctx + tokens)) / self.bandwidth
        return {
            "compute_s": compute,
            "memory_s": memory,
            "overhead_s": np.full_like(tokens, self.overhead_s),
        }

    def time_s(
        self, prefill_tokens: Any, decode_tokens: Any, context_tokens: Any, attn_pairs: Any = None
    ) -> np.ndarray:
        parts = self.breakdown(prefill_tokens, decode_tokens, context_tokens, attn_pairs)
        return np.maximum(parts["compute_s"], parts["memory_s"]) + parts["overhead_s"]


PREFIX_SCENARIO = (
    Path(__file__).resolve().parents[2] / "configs" / "scenarios" / "llm-prefix-routing.yaml"
)


def prefix_scenario(policy: str, replicas: int, *, seed: int, **router: float) -> Any:
    """The shipped prefix-routing scenario (Llama-2-7B tp 1 on H100, prefix caching on) with
    `policy`, `replicas` accelerators, `seed` and router weights overridden."""
    sets = [f"router.policy={policy}", f"regions.0.pools.0.accelerators={replicas}"]
    sets += [f"router.{k}={v}" for k, v in router.items()]
    return load_scenario(PREFIX_SCENARIO, sets, seed=seed)
