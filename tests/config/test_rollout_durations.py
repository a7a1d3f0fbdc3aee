"""Rollout-plan durations are at most 100 years (876,000 h, 36,500 days): the timeline counts
int64 ns, and `swap_time_h.drain`, `bake_days`, `gates.window_h` or `step_h` of 1e300 were
OverflowError tracebacks. Refused before any work, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
PLAN = str(ROOT / "configs" / "rollouts" / "model-regression-rollback.yaml")
HOURS = ["rollout.swap_time_h.drain", "rollout.swap_time_h.install", "rollout.gates.window_h"]
HOURS += ["timeline.step_h"]
DAYS = ["rollout.bake_days", "timeline.horizon_days"]


def _run(tmp_path: Path, field: str, value: float) -> tuple[int, str, Path]:
    out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
    args = ["rollout", PLAN, "--fast", "-o", str(out), "--set", f"{field}={value!r}"]
    res = CliRunner().invoke(cli, args)
    return res.exit_code, res.output, out


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(HOURS + DAYS), factor=st.floats(1.000001, 1e300))
def test_beyond_100_years_is_refused(tmp_path: Path, field: str, factor: float) -> None:
    bound = 876_000.0 if field in HOURS else 36_500.0
    code, output, out = _run(tmp_path, field, bound * factor)
    assert code == 2 and f"{field}: must be <= {bound}" in output, output
    assert "\n" not in output.strip() and not out.exists()


@pytest.mark.parametrize("field", ["rollout.swap_time_h.drain", "rollout.bake_days"])
def test_long_but_representable_durations_run(tmp_path: Path, field: str) -> None:
    code, output, out = _run(tmp_path, field, 1000.0)
    assert code == 0 and (out / "manifest.json").exists(), output
