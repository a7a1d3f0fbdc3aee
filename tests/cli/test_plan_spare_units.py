"""`plan`'s `search.spare_units` is bounded by the accelerators limit (a spare unit is at
least one accelerator): 10**9 spare units built a list of 10**9 failed hosts and was killed
by the kernel's OOM killer at 24 GB. Refused at load, naming the field and the limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.config.limits import ENV
from mtia_cluster.errors import UserError
from mtia_cluster.planning.plan_file import load_plan

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "configs" / "plans" / "rr-and-chat-3-regions.yaml"


def _plan(tmp_path: Path, spare: int) -> Path:
    path = tmp_path / f"p{spare}.yaml"
    path.write_text(PLAN.read_text().replace("spare_units: 1", f"spare_units: {spare}"))
    return path


def test_a_billion_spare_units_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["plan", str(_plan(tmp_path, 10**9)), "-o", str(out)])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "search.spare_units: spare units 1,000,000,000 exceeds the limit accelerators" in line
    assert "\n" not in line and not out.exists()


def test_the_limit_itself_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "accelerators=10")
    cat = load_catalog()
    assert load_plan(_plan(tmp_path, 10), cat).doc.search.spare_units == 10
    with pytest.raises(UserError, match="exceeds the limit accelerators=10"):
        load_plan(_plan(tmp_path, 11), cat)
