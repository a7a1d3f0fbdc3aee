"""Over random small runs: what `simulate` prints (its table and its --json document) is its
summary.json, rendered by the one view (cli/summary_view.py) with the one formatter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import pyarrow as pa
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.cli.summary_view import echo_summary_table
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.traces.io import write_trace


def scenario(policy: str, p99_ms: float) -> dict[str, Any]:
    """Two regions; R&R everywhere, a synthetic service in one (rejected in the other)."""
    return {
        "name": "mixed",
        "seed": 1,
        "report_interval_ms": 1,
        "metrics_interval_ms": 2,
        "router": {"policy": policy},
        "regions": [
            {
                "name": "a",
                "pools": [
                    {"service": "rank", "model": "lc1", "platform": "mtia-2i-rack", "hosts": 1,
                     "batching": {"max_items": 256, "max_wait_us": 200}},
                    {"service": "syn", "model": "svc-exp-1ms", "platform": "mtia-2i-rack",
                     "accelerators": 2, "accelerators_per_replica": 1},
                ],
            },
            {
                "name": "b",
                "pools": [
                    {"service": "rank", "model": "hc1", "platform": "mtia-2i-rack", "hosts": 1,
                     "batching": {"max_items": 128, "max_wait_us": 100}},
                ],
            },
        ],
        "slo": {"rank": {"p99_ms": p99_ms}},
    }  # fmt: skip


def trace(seed: int, n: int, rate_per_s: float) -> pa.Table:
    rng = entity_rng(seed, 7)
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 1e9 / rate_per_s)).astype(np.int64)
    return pa.table(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "arrival_ns": arrival,
            "service": pa.array(rng.choice(["rank", "syn"], n)).dictionary_encode(),
            "region": pa.array(rng.choice(["a", "b"], n)).dictionary_encode(),
            "items": rng.integers(1, 400, n).astype(np.int32),
        }
    )


@click.command()
@click.argument("path")
def render(path: str) -> None:
    """The table of a summary.json file (what `simulate` must have printed)."""
    echo_summary_table(json.loads(Path(path).read_text()))


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    policy=st.sampled_from(["round_robin", "least_outstanding", "p2c"]),
    seed=st.integers(0, 10_000),
    n=st.integers(1, 300),
    rate=st.sampled_from([2_000.0, 50_000.0, 400_000.0]),
    p99_ms=st.sampled_from([0.5, 5.0, 100.0]),
)
def test_simulate_prints_its_summary_json(
    tmp_path_factory: Any, policy: str, seed: int, n: int, rate: float, p99_ms: float
) -> None:
    tmp = tmp_path_factory.mktemp("run")
    config = tmp / "s.yaml"
    config.write_text(yaml.safe_dump(scenario(policy, p99_ms)))
    path = write_trace(trace(seed, n, rate), tmp / "t.parquet", {"source": "test"})
    runner = CliRunner()
    args = ["simulate", str(config), "--trace", str(path)]
    as_json = runner.invoke(cli, [*args, "--json", "-o", str(tmp / "out")])
    assert as_json.exit_code == 0, as_json.output
    written = json.loads((tmp / "out" / "summary.json").read_text())
    assert json.loads(as_json.stdout) == written
    table = runner.invoke(cli, args)  # no -o: summarized in memory
    assert table.exit_code == 0, table.output
    expected = runner.invoke(render, [str(tmp / "out" / "summary.json")])
    assert table.stdout.splitlines()[1:] == expected.stdout.splitlines()
    verdicts = {g["verdict"]["result"] for g in written["groups"]}
    # < 600 s: never VALID; a group offered nothing is NO_REQUESTS (docs/results.md)
    assert verdicts <= {"INVALID", "NO_SLO", "NO_REQUESTS"}
    quiet = {g["verdict"]["result"] for g in written["groups"] if not g["offered"]}
    assert quiet <= {"NO_REQUESTS"}
    failing = runner.invoke(cli, [*args, "--fail-on-invalid"])
    assert failing.exit_code == (1 if "INVALID" in verdicts else 0)
