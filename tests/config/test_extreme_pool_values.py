"""Pool values too large for the engine's int64 nanoseconds are refused at load, naming the
field: `batching.max_wait_us: 1e300` was a numba "Int value is too large" traceback and
`service_time_multiplier: 1e300` a ValueError from negative (overflowed) completion times."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
RR_SMALL = str(ROOT / "configs" / "scenarios" / "rr-small.yaml")
POOL = "regions[0].pools[0]"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("batching.max_wait_us", "1e300", "exceeds the limit trace_span_s=2,678,400"),
        ("batching.max_wait_us", "1e306", "exceeds the limit trace_span_s=2,678,400"),
        ("batching.max_wait_us", "2678400000001", "exceeds the limit trace_span_s=2,678,400"),
        ("service_time_multiplier", "1e300", "must be <= 1000000"),
        ("service_time_multiplier", "1000001", "must be <= 1000000"),
    ],
)
def test_refused_at_load(tmp_path: Path, field: str, value: str, needle: str) -> None:
    never = str(tmp_path / "never-read.parquet")
    args = ["simulate", RR_SMALL, "--trace", never, "--set", f"regions.0.pools.0.{field}={value}"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, (res.output, res.exception)
    line = res.output.strip()
    assert "\n" not in line and f"{POOL}.{field}: " in line and needle in line, line


@pytest.mark.parametrize(
    ("field", "value"),
    [("batching.max_wait_us", "2678400000000"), ("service_time_multiplier", "1000000")],
)
def test_the_bounds_themselves_load(tmp_path: Path, field: str, value: str) -> None:
    never = str(tmp_path / "never-read.parquet")
    args = ["simulate", RR_SMALL, "--trace", never, "--set", f"regions.0.pools.0.{field}={value}"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "never-read.parquet: file not found" in res.output, res.output
