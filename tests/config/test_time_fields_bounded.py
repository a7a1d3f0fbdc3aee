"""Failure and autoscaling times are bounded before any work: longer than the trace_span_s
limit, or an autoscaling interval shorter than report_interval_min_ns, is one line naming
the field, exit 2. `mttr_s`, `interval_s` or `runtime_init_s` of 1e300 were OverflowError
tracebacks; `horizon_s: 1e300` and `interval_s: 1e-300` (a decision every 0 ns) hung, as did
a 1-ms MTBF + MTTR over a day (10^8 fail/repair events per host, drawn before any request)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
RR_SMALL = str(ROOT / "configs" / "scenarios" / "rr-small.yaml")
FAIL = "failures=[{level: host, region: us-east, mtbf_s: %s, mttr_s: %s, horizon_s: %s}]"
AUTO = "autoscaling={feed-ranking: {%s: %s}}"


@pytest.mark.parametrize(
    ("override", "field", "needle"),
    [
        (FAIL % (10, "1e300", 100), "failures[0].mttr_s", "exceeds the limit trace_span_s"),
        (FAIL % ("1e300", 10, 100), "failures[0].mtbf_s", "exceeds the limit trace_span_s"),
        (FAIL % (10, 10, "1e300"), "failures[0].horizon_s", "exceeds the limit trace_span_s"),
        (
            FAIL % ("0.001", "0.001", 86400),
            "failures[0].mtbf_s",
            "exceeds the limit failure_events",
        ),
        (AUTO % ("interval_s", "1e300"), "autoscaling.feed-ranking.interval_s", "trace_span_s"),
        (AUTO % ("runtime_init_s", "1e300"), "autoscaling.feed-ranking.runtime_init_s", "span"),
        (
            AUTO % ("upscale_cooldown_s", "1e300"),
            "autoscaling.feed-ranking.upscale_cooldown_s",
            "span",
        ),
        (
            AUTO % ("interval_s", "1e-300"),
            "autoscaling.feed-ranking.interval_s",
            "below the limit report_interval_min_ns",
        ),
    ],
)
def test_refused_before_any_work(tmp_path: Path, override: str, field: str, needle: str) -> None:
    never = str(tmp_path / "never-read.parquet")
    res = CliRunner().invoke(cli, ["simulate", RR_SMALL, "--trace", never, "--set", override])
    assert res.exit_code == 2, (res.output, res.exception)
    line = res.output.strip()
    assert "\n" not in line and f": {field}: " in line and needle in line, line


def test_ordinary_values_load(tmp_path: Path) -> None:
    never = str(tmp_path / "never-read.parquet")
    for override in (FAIL % (600, 60, 3600), FAIL % (1, 1, 86400), AUTO % ("interval_s", 10)):
        res = CliRunner().invoke(cli, ["simulate", RR_SMALL, "--trace", never, "--set", override])
        assert res.exit_code == 2 and "never-read.parquet: file not found" in res.output, res.output
