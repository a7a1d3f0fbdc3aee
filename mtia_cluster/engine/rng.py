"""Time and randomness: int64 nanoseconds and one seeded stream per entity.

Every random entity (a router, a synthetic server, an LLM replica) draws from its own
``Generator(PCG64(SeedSequence(seed, spawn_key=key)))``; the key names the entity (e.g.
``(KIND_ROUTER, region, service)``), so the numbers an entity sees never depend on which other
entities exist, on how cells are grouped into shards, or on call order. No global state.
"""

from __future__ import annotations

import numpy as np

from mtia_cluster.units import NS_PER_S

# First element of every spawn key: which kind of entity owns the stream.
KIND_ROUTER = 1
KIND_CELL = 2
KIND_SYNTHETIC = 3
KIND_WORKLOAD = 4
KIND_FAILURES = 5  # (KIND_FAILURES, region, level, index): drawn failures and repairs


def entity_rng(seed: int, *key: int) -> np.random.Generator:
    """The random stream of the entity named by `key` under run seed `seed`."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def seconds_to_ns(seconds: float | np.ndarray) -> np.ndarray:
    """Durations in seconds -> int64 ns, rounded up (a non-zero cost is at least 1 ns)."""
    return np.ceil(np.asarray(seconds, dtype=np.float64) * NS_PER_S).astype(np.int64)
