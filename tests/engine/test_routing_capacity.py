"""The `weighted` router draws by routing capacity, not accelerator count (#16)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.capacity import routing_capacity, tokens_per_s
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.router import Router
from mtia_cluster.engine.simulation import Simulation


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(0.5, 20.0), min_size=2, max_size=5), st.floats(0.1, 100.0))
def test_weighted_follows_routing_capacity_not_reports(weights: list[float], reported: float):
    k = len(weights)
    router = Router("weighted", np.arange(k), np.ones(k), entity_rng(0, 1, 0, 0), (3.0, 2.0),
                    np.array(weights))  # fmt: skip
    router.refresh(np.zeros(k, dtype=np.int64), np.full(k, reported))  # reports: equal weights
    n = 40_000
    counts = np.bincount(router.route(n) - 0, minlength=k) / n
    expected = np.array(weights) / sum(weights)
    assert np.allclose(counts, expected, atol=0.02), (counts, expected)


def _llm_pool(platform: str, hosts: int = 1) -> dict:
    return {
        "service": "chat",
        "model": "llama-3.1-8b",
        "platform": platform,
        "hosts": hosts,
        "tp": 1,
        "max_num_batched_tokens": 2048,
    }


def test_llm_replicas_weigh_by_token_rate() -> None:
    """An H100 and a B200 replica of the same size: same accelerator count, different rate;
    the routing capacity is each replica's full-iteration token rate."""
    sc = parse_scenario(
        {
            "name": "cap",
            "router": {"policy": "weighted"},
            "regions": [{"name": "r", "pools": [_llm_pool("hgx-h100"), _llm_pool("hgx-b200")]}],
        }
    )
    sim = Simulation(sc)
    groups = [g for shard in sim.shards for g in shard.groups]
    caps = np.concatenate([routing_capacity(g) for g in groups])
    reported = np.concatenate([g.capacity() for g in groups])
    assert np.all(reported == 1.0)  # one accelerator each: the old weights were all equal
    h100 = [g.cell.scheduler for g in groups[:8]]
    assert np.allclose(caps[:8], tokens_per_s(h100[0]))
    assert caps[8] > 1.2 * caps[0]  # a B200 replica does a full iteration faster
    router = sim.plane.routers[(0, 0)]
    assert np.array_equal(router.state.weight, caps)
