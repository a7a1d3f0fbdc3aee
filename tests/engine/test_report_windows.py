"""Load-aware routing with windows that run on to the next arrival's window (engine/windows.py).

A window with arrivals no longer stops after one report interval when the next arrival is
later: no routing decision reads the reports in between. The results must equal stepping
every report interval, for every policy that reads reports and any sharding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation


def scenario(policy: str, seed: int) -> Any:
    """R&R hosts, LLM replicas and synthetic servers, each service on several cells."""
    return parse_scenario(
        {
            "name": "report-windows",
            "seed": seed,
            "report_interval_ms": 1,
            "metrics_interval_ms": 8,
            "router": {"policy": policy},
            "regions": [
                {
                    "name": "a",
                    "pools": [
                        {"service": "rank", "model": "hc1", "platform": "mtia-2i-rack", "hosts": 3},
                        {
                            "service": "chat",
                            "model": "llama-2-7b",
                            "platform": "hgx-h100",
                            "accelerators": 3,
                            "tp": 1,
                        },
                        {
                            "service": "syn",
                            "model": "svc-exp-1ms",
                            "platform": "mtia-2i-rack",
                            "accelerators": 3,
                            "accelerators_per_replica": 1,
                        },
                    ],
                }
            ],
        }
    )


def trace(seed: int, n: int) -> RequestBatch:
    """Bursts (gaps under one window) and pauses of a few windows, every service."""
    rng = entity_rng(seed, 41)
    pause = rng.random(n) < 0.4
    gap = np.where(pause, rng.integers(1_000_000, 6_000_000, n), rng.integers(0, 400_000, n))
    service = rng.integers(0, 3, n).astype(np.int32)
    cols = make_requests(
        np.cumsum(gap).astype(np.int64),
        items=np.where(service == 0, rng.integers(1, 500, n), 0),
        input_tokens=np.where(service == 1, rng.integers(10, 400, n), 0),
        output_tokens=np.where(service == 1, rng.integers(1, 30, n), 0),
        session_id=rng.integers(0, 6, n),
    ).columns()
    cols["service"] = service
    return RequestBatch(**cols)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["least_outstanding", "p2c", "session_affinity", "prefix_affinity"]),
    st.integers(0, 1000),
    st.integers(1, 60),
)
def test_windows_to_the_next_arrival_equal_stepping(policy: str, seed: int, n: int) -> None:
    sc, tr = scenario(policy, seed), trace(seed, n)
    wide = Simulation(sc).run(tr)
    for other in (Simulation(sc).run(tr, coalesce_idle=False), Simulation(sc, shards=2).run(tr)):
        for name, col in wide.requests.columns().items():
            assert np.array_equal(col, other.requests.columns()[name]), name
        assert wide.end_ns == other.end_ns
        assert len(wide.samples) == len(other.samples)
        for (t_a, a), (t_b, b) in zip(wide.samples, other.samples, strict=True):
            assert t_a == t_b
            assert np.array_equal(a.busy_ns, b.busy_ns) and np.array_equal(a.batches, b.batches)
