"""Time and randomness: int64 nanoseconds and one seeded stream per entity.

Every random entity (a router, a synthetic server, an LLM replica) draws from its own
``Generator(PCG64(SeedSequence(seed, spawn_key=key)))``; the key names the entity (e.g.
``(StreamKind.ROUTER, region, service)``), so the numbers an entity sees never depend on which
other entities exist, on how cells are grouped into shards, or on call order. No global state.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from mtia_cluster.units import NS_PER_S


class StreamKind(IntEnum):
    """First element of every spawn key: which kind of entity owns the stream. The values
    are part of every seeded result: never renumber one (a new kind takes a new value)."""

    ROUTER = 1  # (ROUTER, region, service): a router's tie-breaks and random picks
    CELL = 2  # (CELL, cell): a cell's own draws (synthetic service times, LLM replicas)
    WORKLOAD = 4  # (WORKLOAD, 0): the engine's region assignment of trace rows
    FAILURES = 5  # (FAILURES, region, level, index): drawn failures and repairs
    LLM_COST_CHECK = 7  # the random shapes checking an LLM cost table against its model
    LLM_SERVER_WORKLOAD = 901  # planning/llm_server.py: a replica's LoadGen workload
    CAPACITY_WORKLOAD = 902  # planning/capacity.py: the capacity search's traces
    PLAN_WORKLOAD = 903  # (.., service, region): planning/plan_fleet.py confirming traces
    ROLLOUT_MEAN_SIZES = 951  # rollout fast capacity: mean request sizes
    ROLLOUT_RACK_FAILURES = 952  # (.., region): rack failures on the rollout timeline
    ROLLOUT_MOMENT_TRAFFIC = 953  # (.., region, hour): a replayed moment's traffic
    ROLLOUT_PART_FAILURES = 954  # (.., region): host / accelerator failures
    ROLLOUT_REGION_OUTAGES = 955  # (.., region): drawn whole-region outages
    ROLLOUT_DRILL_TRAFFIC = 956  # (.., region, hour): an N-1 drill's traffic
    TRACE_SAMPLE = 0x5A3  # traces/transforms.py: sampling rows of a trace
    INJECTED_ERRORS = 0x5EED_E770  # salt of the per-request injected-error hash (topology)


def entity_rng(seed: int, *key: int) -> np.random.Generator:
    """The random stream of the entity named by `key` under run seed `seed`."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def seconds_to_ns(seconds: float | np.ndarray) -> np.ndarray:
    """Durations in seconds -> int64 ns, rounded up (a non-zero cost is at least 1 ns)."""
    return np.ceil(np.asarray(seconds, dtype=np.float64) * NS_PER_S).astype(np.int64)
