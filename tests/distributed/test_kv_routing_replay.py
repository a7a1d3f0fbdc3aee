"""KV-aware routers in a replay: every placement equals the single-process engine (the
routers read prefix-cache reports made at window boundaries, whoever advances the cells)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.distributed.runner import ReplayOptions, replay
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.trace_input import load_trace
from mtia_cluster.traces.generators.mix import generate_table
from mtia_cluster.traces.io import write_trace

from .conftest import SCENARIO, assert_same_run, requests_of

SPEC = {
    "name": "kv-routing",
    "duration_s": 12,
    "regions": {"us-east": {"weight": 1.0}, "eu-west": {"weight": 0.6}},
    "services": [
        {"name": "rr-ranking", "kind": "rr", "rate_per_s": 20.0},
        {
            "name": "llm-chat",
            "kind": "llm",
            "rate_per_s": 12.0,
            "sessions": {"mean_turns": 3, "think_time_s": 4},
            "prefix_blocks": {
                "block_tokens": 256,
                "system_prompts": 4,
                "system_prompt_tokens": 1024,
            },
        },
    ],
}
CACHING = ("regions.0.pools.1.prefix_caching=true", "regions.1.pools.1.prefix_caching=true")
PLACEMENTS = {
    "region": {},
    "host": {"placement": "host"},
    "rack": {"placement": "rack"},
    "shards3": {"shards": 3},
}


@pytest.fixture(scope="module")
def chain_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table, meta = generate_table(SPEC, seed=2)
    return write_trace(table, tmp_path_factory.mktemp("kv") / "chains.parquet", meta)


@pytest.mark.parametrize(
    ("policy", "placements"),
    [("prefix_affinity", list(PLACEMENTS)), ("session_affinity", ["region", "host"])],
)
def test_every_placement_equals_the_engine(
    chain_trace: Path, tmp_path: Path, policy: str, placements: list[str]
) -> None:
    overrides = (f"router.policy={policy}", *CACHING)
    runs = {
        name: replay(
            SCENARIO,
            chain_trace,
            tmp_path / name,
            ReplayOptions(address="inprocess", overrides=overrides, **PLACEMENTS[name]),
        )
        for name in placements
    }
    for name in placements[1:]:
        assert_same_run(runs[placements[0]], runs[name])
    scenario = load_scenario(SCENARIO, overrides)
    engine = Simulation(scenario).run(load_trace(chain_trace, scenario)).requests
    ours = requests_of(runs[placements[0]])
    assert ours["request_id"] == engine.request_id.tolist()
    for col in ("accelerator_id", "start_ns", "first_token_ns", "finish_ns", "batch_size"):
        assert ours[col] == getattr(engine, col).tolist(), col
    assert engine.cached_tokens.sum() > 0  # the prefix cache is in play
    assert len(np.unique(engine.accelerator_id[engine.input_tokens > 0])) > 2
