"""The cost model: pure, vectorized functions of (chip, workload, batch shape, dtype).

`rr_batch_cost` for ranking & recommendation batches, `llm_iteration_model` for LLM serving
iterations and KV capacity. See docs/validation.md for every parameter and its source.
"""

from mtia_cluster.perf.llm import LLMIterationModel, llm_iteration_model
from mtia_cluster.perf.rr import RRCost, embedding_hit_fraction, rr_batch_cost

__all__ = [
    "LLMIterationModel",
    "RRCost",
    "embedding_hit_fraction",
    "llm_iteration_model",
    "rr_batch_cost",
]
