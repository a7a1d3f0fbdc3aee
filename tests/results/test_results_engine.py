"""An in-process run summarized in memory equals the same rows written by two shard writers
and finalized (one summary path: `results.summarize` and `ResultsWriter.finalize`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import FORMAT_VERSION, ResultsWriter, open_results, summarize
from mtia_cluster.results.run import device_tables

ROOT = Path(__file__).resolve().parents[2]


def test_rr_small_summary_in_memory_equals_two_shard_writers(tmp_path: Path) -> None:
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
        slos=scenario.slo,
        interval_ns=scenario.metrics_interval_ns,
    ) as run:
        for s, rows in enumerate(np.array_split(np.arange(len(results.requests)), 2)):
            with run.shard(s) as shard:
                shard.write_completed(results.requests.take(rows))
                if s == 0:
                    for table in device_tables(results):
                        shard.write_devices(table)
        run.finalize(simulated_span_ns=results.end_ns)
    on_disk = open_results(tmp_path / "run").summary
    in_memory = json.loads(
        json.dumps({"format_version": FORMAT_VERSION, **summarize(results).summary})
    )
    assert on_disk == in_memory
    (g,) = on_disk["groups"]
    assert g["offered"] == n and g["verdict"]["metrics"][0]["bound_ns"] == 10_000_000
    # and summarizing the directory again gives the same document
    again = json.loads(json.dumps(summarize(tmp_path / "run").summary))
    assert {"format_version": FORMAT_VERSION, **again} == on_disk
