"""Time and randomness: int64 nanoseconds and one seeded stream per entity.

Every random entity (a router, a synthetic server, an LLM replica) draws from its own
``Generator(PCG64(SeedSequence(seed, spawn_key=key)))``; the key names the entity (e.g.
``(KIND_ROUTER, region, service)``), so the numbers an entity sees never depend on which other
entities exist, on how cells are grouped into shards, or on call order. No global state.
"""

from __future__ import annotations

import math

import numpy as np

from mtia_cluster.units import NS_PER_MS, NS_PER_S, NS_PER_US

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


def ms_to_ns(ms: float) -> int:
    """Milliseconds -> int ns (rounded to the nearest ns)."""
    return round(ms * NS_PER_MS)


def us_to_ns(us: float) -> int:
    """Microseconds -> int ns (rounded to the nearest ns)."""
    return round(us * NS_PER_US)


def window_edges(start_ns: int, end_ns: int, interval_ns: int) -> np.ndarray:
    """Window boundaries start, start+interval, ... up to and including the first >= end."""
    if interval_ns <= 0:
        raise ValueError("interval_ns must be > 0")
    count = max(1, math.ceil((end_ns - start_ns) / interval_ns))
    return start_ns + interval_ns * np.arange(count + 1, dtype=np.int64)
