"""Property tests of analyze over random synthetic runs: partitions add up, summary agrees."""

from __future__ import annotations

import math

import pytest
from analysis_synth import INTERVAL_NS, Spec, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.results import open_results
from mtia_cluster.results.analysis import analyze

_SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
specs = st.builds(
    Spec,
    per_group=st.integers(1, 300),
    slow_factor=st.sampled_from([0.25, 0.5, 1.0, 3.0]),
    drop_every=st.integers(0, 7),
    seed=st.integers(0, 1000),
)
COUNTS = ("offered", "completed", "good", "dropped")


@_SETTINGS
@given(spec=specs, window_s=st.sampled_from([None, 1, 3]))
def test_every_partition_adds_up_to_the_total(
    tmp_path_factory: pytest.TempPathFactory, spec: Spec, window_s: int | None
) -> None:
    run = write(tmp_path_factory.mktemp("p") / "run", spec)
    window_ns = window_s * INTERVAL_NS if window_s else None
    total = open_results(run).summary["fleet"]
    for by in (("region", "service"), ("generation",), ("rack",), ("service", "rack")):
        doc = analyze(run, by=by, window_ns=window_ns)
        levels: dict[str, dict[str, int]] = {}
        for r in doc["rows"]:
            sums = levels.setdefault(r["level"], dict.fromkeys(COUNTS, 0))
            for k in COUNTS:
                sums[k] += r[k]
        for level, sums in levels.items():
            assert sums == {k: total[k] for k in COUNTS}, (by, level)


@_SETTINGS
@given(spec=specs)
def test_groups_equal_summary_json(tmp_path_factory: pytest.TempPathFactory, spec: Spec) -> None:
    run = write(tmp_path_factory.mktemp("s") / "run", spec)
    summary = open_results(run).summary
    doc = analyze(run)
    rows = {(r["region"], r["service"]): r for r in doc["rows"] if r["level"] == "region,service"}
    totals = {r["region"]: r for r in doc["rows"] if r["service"] == "*"}
    for g in [*summary["regions"], summary["fleet"]]:
        assert totals[g["region"]]["verdict"]["result"] == g["verdict"]["result"]
    assert len(rows) == len(summary["groups"])
    for g in summary["groups"]:
        mine = rows[(g["region"], g["service"])]
        for k in (*COUNTS, "items", "output_tokens", "accelerators"):
            assert mine[k] == g[k], k
        for block in ("latency_ns", "ttft_ns", "tpot_ns"):
            for q, v in (g.get(block) or {}).items():
                got = mine[block][q]
                assert (v is None and got is None) or math.isclose(v, got, rel_tol=1e-12)
        assert mine["verdict"] == g["verdict"]
