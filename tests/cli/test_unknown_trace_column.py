"""A trace column the format does not define is refused (one line naming the file and the
column, with a did-you-mean, exit 2), not carried along unread: a misspelled optional column
(`regoin`, `sesion_id`) used to be ignored, so requests silently lost their region or
session."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.traces.schema import OPTIONAL, REQUIRED

ROOT = Path(__file__).resolve().parents[2]
RR_SMALL = str(ROOT / "configs" / "scenarios" / "rr-small.yaml")
KNOWN = [*REQUIRED, *OPTIONAL]
_n = itertools.count()


def _trace(path: Path, extra: str) -> Path:
    n = 4
    pq.write_table(
        pa.table(
            {
                "request_id": pa.array(range(n), pa.int64()),
                "arrival_ns": pa.array([i * 1000 for i in range(n)], pa.int64()),
                "service": ["feed-ranking"] * n,
                "items": pa.array([100] * n, pa.int32()),
                extra: pa.array([1] * n, pa.int64()),
            }
        ),
        path,
    )
    return path


@st.composite
def misspelled(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(list(OPTIONAL)))
    i = draw(st.integers(0, len(name) - 1))
    swap = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"))
    typo = name[:i] + swap + name[i + 1 :]
    if draw(st.booleans()):
        typo = name[:i] + name[i + 1 :]  # a dropped letter
    return name, typo


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=misspelled())
def test_a_misspelled_column_is_refused_with_did_you_mean(tmp_path: Path, pair) -> None:
    name, typo = pair
    if typo in KNOWN:
        return  # a real column (e.g. a typo that lands on another name): not a misspelling
    path = _trace(tmp_path / f"t{next(_n)}.parquet", typo)
    for args in (["trace", "inspect", str(path)], ["simulate", RR_SMALL, "--trace", str(path)]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        line = res.output.strip()
        assert "\n" not in line and f"{path}: {typo}: unknown column" in line, line
        if "did you mean" in line:  # a known column; for one letter changed, mostly `name`
            assert line.split("did you mean '")[1].split("'")[0] in KNOWN, line
        else:
            assert f"known: {', '.join(KNOWN)})" in line and name in line, line


def test_an_unrelated_extra_column_lists_the_known_ones(tmp_path: Path) -> None:
    path = _trace(tmp_path / "t.parquet", "user_tag")
    res = CliRunner().invoke(cli, ["trace", "inspect", str(path)])
    assert res.exit_code == 2 and "user_tag: unknown column (known: request_id," in res.output
