"""A scenario's `verdict:` options are the rules its runs are judged by (summary.json
`rules`, the console), LoadGen Server's when unset; a bad option is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtia_cluster.cli.main import cli
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.results.verdict import VerdictRules
from mtia_cluster.traces.generators import generate_table
from mtia_cluster.traces.io import write_trace

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "configs" / "scenarios" / "llm-small.yaml"
SPEC = {
    "name": "t",
    "requests": 40,
    "services": [{"name": "chat", "kind": "llm", "rate_per_s": 5.0}],
}


def _trace(tmp_path: Path) -> Path:
    table, meta = generate_table(SPEC, seed=1)
    return write_trace(table, tmp_path / "t.parquet", meta)


def _doc(**verdict: object) -> dict:
    doc = yaml.safe_load(SCENARIO.read_text())
    if verdict:
        doc["verdict"] = verdict
    return doc


def test_unset_options_keep_loadgen_defaults() -> None:
    assert VerdictRules(**parse_scenario(_doc()).verdict) == VerdictRules()
    sc = parse_scenario(_doc(min_duration_s=1.5, early_stopping=False))
    assert VerdictRules(**sc.verdict) == VerdictRules(
        min_duration_ns=1_500_000_000, early_stopping=False
    )


def test_simulate_judges_by_the_scenario_rules(runner, tmp_path: Path) -> None:
    """The same short run: INVALID under LoadGen's 600 s minimum duration, and VALID (or
    INVALID only for its percentile) without it; summary.json records the rules used."""
    summaries, trace = {}, _trace(tmp_path)
    for name, verdict in (("loadgen", {}), ("short", {"min_duration_s": 0.0})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_doc(**verdict)))
        out = tmp_path / name
        args = ["simulate", str(path), "--trace", str(trace), "-o", str(out)]
        res = runner.invoke(cli, args)
        assert res.exit_code in (0, 1), res.output
        summaries[name] = json.loads((out / "summary.json").read_text())
        assert "rules: " in res.output
    loadgen, short = summaries["loadgen"], summaries["short"]
    assert loadgen["rules"] == VerdictRules().to_dict()
    assert short["rules"]["min_duration_ns"] == 0
    (g_long,) = loadgen["groups"]
    (g_short,) = short["groups"]
    assert any("before the min duration" in r for r in g_long["verdict"]["reasons"])
    assert not any("before the min duration" in r for r in g_short["verdict"]["reasons"])
    assert g_short["verdict"]["metrics"] == g_long["verdict"]["metrics"]  # same run, same counts


@pytest.mark.parametrize(
    ("verdict", "field"),
    [
        ({"min_duration_s": -1}, "verdict.min_duration_s"),
        ({"confidence": 1.0}, "verdict.confidence"),
        ({"early_stoping": False}, "verdict.early_stoping"),
    ],
)
def test_bad_option_is_one_line_exit_2(runner, tmp_path: Path, verdict, field) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_doc(**verdict)))
    res = runner.invoke(cli, ["simulate", str(path), "--trace", str(tmp_path / "none.parquet")])
    assert res.exit_code == 2, res.output
    assert field in res.output and len(res.output.strip().splitlines()) == 1
