"""`--set` accepts the paths error messages print (`regions[0].pools[0].racks`) as well as
the dotted form (`regions.0.pools.0.racks`): a user can paste the field of an error line
back into `--set` to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.config import apply_overrides, load_yaml
from mtia_cluster.config.models import ScenarioFile
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
MULTI = ROOT / "configs" / "scenarios" / "multi-region.yaml"
RR_SMALL = ROOT / "configs" / "scenarios" / "rr-small.yaml"


@given(region=st.integers(0, 1), pool=st.integers(0, 1), racks=st.integers(1, 9))
def test_brackets_and_dots_set_the_same_field(region: int, pool: int, racks: int) -> None:
    doc = load_yaml(MULTI)
    dotted = apply_overrides(doc, [f"regions.{region}.pools.{pool}.racks={racks}"], ScenarioFile)
    bracket = apply_overrides(doc, [f"regions[{region}].pools[{pool}].racks={racks}"], ScenarioFile)
    assert bracket == dotted
    assert bracket["regions"][region]["pools"][pool]["racks"] == racks


def test_the_field_of_an_error_line_can_be_pasted_into_set(tmp_path: Path) -> None:
    """The refusal names `regions[0].pools[0].racks`; `--set` with that path fixes it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(RR_SMALL.read_text().replace("racks: 1", "racks: 0"))
    runner = CliRunner()
    never = str(tmp_path / "never-read.parquet")
    first = runner.invoke(cli, ["simulate", str(bad), "--trace", never])
    assert first.exit_code == 2
    field = first.output.split(": ")[2]
    assert field == "regions[0].pools[0].racks", first.output
    again = runner.invoke(cli, ["simulate", str(bad), "--trace", never, "--set", f"{field}=1"])
    # the scenario is valid now: what is refused is the (absent) trace, not the config
    assert again.exit_code == 2 and "never-read.parquet: file not found" in again.output, (
        again.output
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("regions[x].weight=1", "regions holds no keys"),
        ("regions[0.weight=1", "unknown path"),
        ("regions[9].weight=1", "index 9 out of range"),
        ("regions[0].weigth=1", "did you mean 'weight'"),
    ],
)
def test_bad_bracket_paths_are_refused(text: str, needle: str) -> None:
    with pytest.raises(UserError) as err:
        apply_overrides(load_yaml(MULTI), [text], ScenarioFile)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
