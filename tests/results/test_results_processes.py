"""Shard writers in separate processes (as Ray actors would be) fill one run directory."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from results_synth import (
    REGIONS,
    SERVICES,
    SLOS,
    make_completed,
    sorted_requests,
    write_run,
    write_shard_in_process,
)

from mtia_cluster.results import ResultsWriter, open_results


def test_run_target_is_small_and_picklable(tmp_path: Path) -> None:
    run = ResultsWriter(tmp_path / "o", manifest={}, services=SERVICES, regions=REGIONS, slos=SLOS)
    blob = pickle.dumps(run.target)
    assert len(blob) < 2000
    assert pickle.loads(blob) == run.target


def test_shards_in_other_processes_equal_one_in_process_writer(tmp_path: Path) -> None:
    n, seed = 1500, 11
    owner = np.random.default_rng(0).integers(0, 3, n)
    shards = [np.flatnonzero(owner == s) for s in range(3)]
    with ResultsWriter(
        tmp_path / "multi",
        manifest={},
        services=SERVICES,
        regions=REGIONS,
        slos=SLOS,
        interval_ns=250_000_000,
    ) as run:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
            futures = [
                pool.submit(write_shard_in_process, run.target, s, n, seed, rows.tolist())
                for s, rows in enumerate(shards)
            ]
            assert sum(f.result() for f in futures) == n
        run.finalize(simulated_span_ns=2_000_000_000)
    single = write_run(
        tmp_path / "single", make_completed(n, seed), shards=[np.arange(n)], device_windows=0
    )
    a, b = open_results(tmp_path / "multi"), open_results(single)
    assert sorted_requests(a.requests.to_table()).equals(sorted_requests(b.requests.to_table()))
    assert a.manifest["counts"]["shards_closed"] == 3
    assert a.summary == b.summary
