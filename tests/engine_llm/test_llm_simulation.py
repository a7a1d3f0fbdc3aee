"""LLM cells inside the engine's Simulation: plain, prefix-cached and disaggregated pools."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import STATUS_OK, RequestBatch, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation


def scenario(pool: dict[str, Any]) -> Any:
    return parse_scenario(
        {
            "name": "llm-cells",
            "seed": 3,
            "report_interval_ms": 5,
            "metrics_interval_ms": 10000,
            "router": {"policy": "least_outstanding"},
            "regions": [
                {
                    "name": "r1",
                    "pools": [
                        {
                            "service": "chat",
                            "model": "llama-2-7b",
                            "platform": "hgx-h100",
                            "accelerators": 4,
                            **pool,
                        }
                    ],
                }
            ],
        },
        file="llm-cells.yaml",
    )


def trace() -> RequestBatch:
    """20 s at 4 requests/s, two-turn sessions sharing their first turn as a prefix."""
    rng = entity_rng(7, 1)
    n = 80
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 2.5e8)).astype(np.int64)
    prompt = np.clip(np.round(rng.lognormal(np.log(900), 0.8, n)), 1, 6000).astype(np.int32)
    output = np.clip(np.round(rng.lognormal(np.log(150), 0.7, n)), 1, 1000).astype(np.int32)
    session = np.arange(n) // 2
    prompt[1::2] += prompt[0::2] + output[0::2]  # the second turn carries the first
    return make_requests(
        arrival, items=0, input_tokens=prompt, output_tokens=output, session_id=session
    )


@pytest.mark.parametrize(
    "pool",
    [
        {"tp": 2},
        {"tp": 1, "prefix_caching": True, "max_num_batched_tokens": 512},
        {"accelerators_per_replica": 2, "disaggregation": {"prefill_accelerators": 1}},
    ],
    ids=["tp2", "prefix-cache", "disaggregated"],
)
def test_llm_pools_in_simulation(pool: dict[str, Any]) -> None:
    req = trace()
    one = Simulation(scenario(pool)).run(req).requests
    two = Simulation(scenario(pool), shards=2).run(req).requests
    order = np.argsort(one.request_id)
    assert one.request_id[order].tolist() == list(range(len(req)))  # each exactly once
    for name, col in one.columns().items():  # placement independence
        np.testing.assert_array_equal(col[order], getattr(two, name)[np.argsort(two.request_id)])
    assert np.all(one.status == STATUS_OK)
    assert np.all(one.start_ns >= one.arrival_ns)
    assert np.all(one.first_token_ns > one.start_ns)
    assert np.all(one.finish_ns >= one.first_token_ns)
    ttft_s = (one.first_token_ns - one.arrival_ns) / 1e9
    assert np.median(ttft_s) < 1.0  # a lightly loaded 7B replica answers within a second
