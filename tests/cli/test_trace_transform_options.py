"""`trace transform` checks its options before reading any input: a bad value is one line
naming the option, exit 2. `--end-s inf`, `--end-s 1e300` and `--start-s nan` were
OverflowError/ValueError tracebacks, and `--scale-rate 0` was refused only after every input
had been read into memory (under the names `factor`, `start/end`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "traces" / "demo.parquet"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--end-s", "inf"], "--end-s"),
        (["--end-s", "1e300"], "--end-s"),
        (["--start-s", "nan"], "--start-s"),
        (["--start-s", "-1"], "--start-s"),
        (["--start-s", "5", "--end-s", "5"], "--end-s"),
        (["--scale-rate", "0"], "--scale-rate"),
        (["--scale-rate", "inf"], "--scale-rate"),
        (["--sample", "nan"], "--sample"),
        (["--sample", "1.5"], "--sample"),
        (["--remap", "a"], "--remap"),
    ],
)
def test_bad_option_is_refused_before_reading(tmp_path: Path, args: list[str], option: str) -> None:
    out = tmp_path / "t.parquet"
    never = tmp_path / "never-read.parquet"  # does not exist: refused before it is opened
    res = CliRunner().invoke(cli, ["trace", "transform", str(never), *args, "-o", str(out)])
    assert res.exit_code == 2, (res.output, res.exception)
    line = res.output.strip()
    assert "\n" not in line and line.startswith(f"error: {option}: "), line
    assert not out.exists()


def test_a_valid_slice_still_works(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    args = ["trace", "transform", str(DEMO), "--start-s", "10", "--end-s", "20"]
    res = CliRunner().invoke(cli, [*args, "--scale-rate", "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    import pyarrow.parquet as pq

    t = pq.read_table(out, columns=["arrival_ns"]).column(0).to_pylist()
    assert t and min(t) >= 0 and max(t) < 5 * 10**9  # 10 s of arrivals at twice the rate
