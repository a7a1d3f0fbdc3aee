"""Golden scenarios: fixed seeds, checked-in summaries (tests/engine/golden/*.json).

The expected files were produced by this code (``python tests/engine/test_golden.py``
rewrites them) and reviewed for plausibility (see docs/engine.md). They hold the summary.json
groups (`results.summarize`, the one summary path). Every figure of every group is compared:
integers and strings exactly, floats to 1e-9 relative.

History: until the engine's own metrics (engine/metrics.py) were removed, the files held that
module's rows (``latency_p99_ms``, ``slo``...). Every figure was carried over unchanged
(latency/TTFT/TPOT quantiles, throughput and utilization bit for bit, energy to 1e-15); the
verdict changed from VALID (p99 only) to INVALID, because the one verdict also applies
LoadGen's 600 s minimum duration and early stopping to these 2 s and 50 s runs.
Issue #19 added the cost fields (host energy, energy at the wall, capex/energy cost, carbon,
per query and per output token) to every group, and LLM decode iterations, memory-bound,
no longer draw TDP: llm-small's energy_j fell from 65.1 kJ to 40.0 kJ (and its perf/W
figures with it); every other figure is unchanged (docs/planning.md).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import summarize

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"


def rr_trace() -> RequestBatch:
    """2 s of Poisson arrivals at 40,000/s, items lognormal (mean ~270, as MLPerf DLRM)."""
    rng = entity_rng(2024, 1)
    n = 80_000
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 25_000)).astype(np.int64)
    items = np.clip(np.round(rng.lognormal(np.log(230), 0.55, n)), 1, 2000).astype(np.int32)
    return make_requests(arrival, items=items)


def llm_trace() -> RequestBatch:
    """60 s of Poisson arrivals at 2/s, prompt and output lengths lognormal."""
    rng = entity_rng(2024, 2)
    n = 120
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 5e8)).astype(np.int64)
    inp = np.clip(np.round(rng.lognormal(np.log(900), 0.8, n)), 1, 8000).astype(np.int32)
    out = np.clip(np.round(rng.lognormal(np.log(200), 0.7, n)), 1, 2000).astype(np.int32)
    return make_requests(arrival, items=0, input_tokens=inp, output_tokens=out)


CASES: dict[str, Any] = {"rr-small": rr_trace, "llm-small": llm_trace}


def summary(name: str) -> list[dict[str, Any]]:
    scenario = load_scenario(ROOT / "configs" / "scenarios" / f"{name}.yaml")
    groups: list[dict[str, Any]] = summarize(Simulation(scenario).run(CASES[name]())).summary[
        "groups"
    ]
    return groups


def close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(a) == sorted(b) and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_summary(name: str) -> None:
    path = GOLDEN / f"{name}.json"
    if not (ROOT / "configs" / "scenarios" / f"{name}.yaml").exists():
        pytest.fail(f"scenario {name} missing")
    expected = json.loads(path.read_text())
    got = json.loads(json.dumps(summary(name)))
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert sorted(g) == sorted(e)
        bad = {k: (g[k], e[k]) for k in e if not close(g[k], e[k])}
        assert not bad, bad


if __name__ == "__main__":  # regenerate: python tests/engine/test_golden.py [name...]
    for case in sys.argv[1:] or sorted(CASES):
        (GOLDEN / f"{case}.json").write_text(json.dumps(summary(case), indent=1) + "\n")
        print(f"wrote {case}")
