"""The engine's own in-memory summary and the Parquet results agree on a real scenario."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import ResultsWriter, open_results, slos_from_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_rr_small_replay_written_and_summarized_like_the_engine(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "configs" / "scenarios" / "rr-small.yaml")
    rng = entity_rng(7, 1)
    n = 6000
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 25_000)).astype(np.int64)
    items = np.clip(np.round(rng.lognormal(np.log(230), 0.55, n)), 1, 2000).astype(np.int32)
    results = Simulation(scenario, shards=2).run(make_requests(arrival, items=items))
    with ResultsWriter(
        tmp_path / "run",
        manifest={"scenario": scenario.name, "seed": scenario.seed},
        services=results.services,
        regions=results.regions,
        slos=slos_from_scenario(scenario.slo),
    ) as run:
        for s, rows in enumerate(np.array_split(np.arange(len(results.requests)), 2)):
            with run.shard(s) as shard:
                shard.write_completed(results.requests.take(rows))
        run.finalize(simulated_span_ns=results.end_ns)
    ours = {
        (g["region"], g["service"]): g for g in open_results(tmp_path / "run").summary["groups"]
    }
    engine = results.summary()
    assert len(engine) == len(ours) == 1
    for row in engine:
        g = ours[(row["region"], row["service"])]
        assert g["offered"] == row["requests"] == n
        assert g["completed"] == row["completed"]
        assert g["completed_per_s"] == pytest.approx(row["throughput_per_s"], rel=1e-12)
        for key in ("p50", "p99"):
            assert g["latency_ns"][key] == pytest.approx(row[f"latency_{key}_ms"] * 1e6, rel=1e-9)
        assert g["verdict"]["metrics"][0]["bound_ns"] == 10_000_000
