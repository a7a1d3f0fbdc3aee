"""A plan whose demand needs a fleet beyond the `accelerators` limit: refused in one line
naming the region's peak_rps when no candidate fits (a peak_rps of 1e300 printed fleets of
10^300 accelerators and exited 0), and only the candidates over the limit left out when
others fit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "configs" / "plans" / "rr-and-chat-3-regions.yaml"


def _plan(tmp_path: Path, us_east_rps: str) -> Path:
    text = PLAN.read_text()
    new = re.sub(r"us-east: \{peak_rps: 150000,", f"us-east: {{peak_rps: {us_east_rps},", text)
    assert new != text
    out = tmp_path / "p.yaml"
    out.write_text(new)
    return out


@pytest.mark.parametrize("rps", ["1e300", "1e12"])
def test_a_peak_no_fleet_may_hold_is_one_line(tmp_path: Path, rps: str) -> None:
    res = CliRunner().invoke(cli, ["plan", str(_plan(tmp_path, rps)), "--no-confirm"])
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert "services[0].demand.us-east.peak_rps" in line
    assert "exceeds the limit accelerators=1,000,000" in line


def test_candidates_over_the_limit_are_left_out(tmp_path: Path, monkeypatch) -> None:
    """Limit 200: us-east's R&R demand needs 288 MTIA 2i accelerators but fits on the GPUs
    (56-168): the MTIA rows are marked, not ranked, and every fleet shown is within it."""
    monkeypatch.setenv("MTIA_CLUSTER_LIMITS", "accelerators=200")
    res = CliRunner().invoke(cli, ["plan", str(PLAN), "--no-confirm", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    rows = [c for c in doc["candidates"] if c["service"] == "rr-ranking"]
    rows = [c for c in rows if c["region"] == "us-east"]
    over = [c for c in rows if (c["infeasible"] or "").startswith("needs ")]
    assert over and all("cost" not in c for c in over)
    assert {c["chip"] for c in over} == {"mtia-2i"}
    assert all(c["cost"]["units"] * c["unit_accelerators"] <= 200 for c in rows if "cost" in c)
    for w in doc["winners"]:
        if w["winner"] is not None:
            assert w["winner"]["cost"]["units"] * w["winner"]["unit_accelerators"] <= 200
