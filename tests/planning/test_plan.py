"""`plan`: strict input, the N-1 margin, a winner whose fleet meets the SLOs when replayed,
safe output, and a Pareto front that is non-dominated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.planning.plan_cost import units_needed
from mtia_cluster.planning.plan_pareto import dominates, pareto_front
from mtia_cluster.results.verdict import SEARCH_RULES, VerdictRules

PLAN = {
    "name": "small",
    "seed": 3,
    "regions": [{"name": "us-east"}, {"name": "eu-west"}],
    "services": [
        {
            "name": "ranking",
            "model": "hc3",
            "slo": {"p99_ms": 100},
            "demand": {
                "us-east": {"peak_rps": 400, "peak_to_trough": 2},
                "eu-west": {"peak_rps": 250},
            },
            "candidates": {"chips": ["mtia-1", "h100"], "max_items": [256, 1024]},
        },
        {
            "name": "chat",
            "model": "llama-3.1-8b",
            "slo": {"ttft_p99_ms": 2000, "tpot_p99_ms": 100},
            "demand": {"us-east": {"peak_rps": 120}},
            "candidates": {"chips": ["h100", "mi300x"], "max_num_seqs": [64]},
        },
    ],
    # a low target utilization oversizes the estimated fleets: the replays trim them
    "search": {
        "finalists": 1,
        "span_s": 3,
        "max_requests": 5000,
        "trim_steps": 2,
        "target_utilization": 0.3,
    },
}


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """One confirmed plan of PLAN in process, written to a directory; its --json output."""
    from click.testing import CliRunner

    tmp = tmp_path_factory.mktemp("plan")
    out = tmp / "out"
    res = CliRunner().invoke(
        cli,
        ["plan", str(_write(tmp, PLAN)), "-o", str(out), "--address", "inprocess", "--json"],
    )
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout), res.stdout


def test_json_and_plan_json_agree(planned):
    out, printed, _ = planned
    written = json.loads((out / "plan.json").read_text())
    written.pop("search_s"), printed.pop("search_s")
    assert written == printed
    assert json.loads((out / "manifest.json").read_text())["format"] == "mtia-cluster-plan"


def test_every_winner_carries_the_n_minus_1_margin(planned):
    out, result, _ = planned
    spare = PLAN["search"].get("spare_units", 1)
    doc = yaml.safe_load((out / "scenario.yaml").read_text())
    failed = {(e["region"], e["service"]): e["hosts"] for e in doc["events"]}
    assert len(result["winners"]) == 3  # ranking in two regions, chat in one
    for w in result["winners"]:
        row = w["winner"]
        assert row is not None and row["passed"] is True
        units, peak = row["cost"]["units"], row["cost"]["peak_rps"]
        # sized by the estimate, then shrunk by replays that passed (never below spare + 1)
        assert units + row["trimmed"] == math.ceil(peak / row["rps_per_unit"]) + spare
        assert units > spare and 0 <= row["trimmed"] <= PLAN["search"]["trim_steps"]
        # the confirming replay ran without the spare units
        assert failed[(w["region"], w["service"])] == list(range(spare * row["unit_hosts"]))
        pool = next(
            p
            for r in doc["regions"]
            if r["name"] == w["region"]
            for p in r["pools"]
            if p["service"] == w["service"]
        )
        assert pool["hosts"] == units * row["unit_hosts"]


def test_trimmed_fleets_passed_their_own_replay(planned):
    """Some winner was shrunk below its estimate (the plan oversizes on purpose), and each
    shrunk winner's replay is of its final size: the written scenario holds that size."""
    _, result, _ = planned
    trimmed = [w["winner"] for w in result["winners"] if w["winner"]["trimmed"]]
    assert trimmed
    for row in trimmed:
        assert row["passed"] and row["replay"]["slo_ratio"] <= 1.0


def test_winner_is_the_cheapest_candidate_that_passed(planned):
    _, result, _ = planned
    for w in result["winners"]:
        rows = [
            c
            for c in result["candidates"]
            if c["service"] == w["service"] and c["region"] == w["region"] and c["passed"]
        ]
        cheapest = min(c["cost"]["cost_usd_per_year"] for c in rows)
        assert w["winner"]["cost"]["cost_usd_per_year"] == cheapest
        assert w["winner"]["why"]


def test_fleet_totals_are_the_sum_of_the_winners(planned):
    _, result, _ = planned
    total = result["totals"]["fleet"]
    for key in ("cost_usd_per_year", "facility_energy_kwh_per_year", "co2e_t_per_year"):
        parts = sum(w["winner"]["cost"][key] for w in result["winners"])
        assert total[key] == pytest.approx(parts)
        assert sum(r[key] for r in result["totals"]["regions"].values()) == pytest.approx(parts)
    for w in result["winners"]:
        c = w["winner"]["cost"]
        assert c["cost_usd_per_year"] == pytest.approx(
            c["capex_usd_per_year"] + c["energy_usd_per_year"]
        )


def test_winner_scenario_replayed_meets_the_slos(planned, runner, tmp_path):
    """The written fleet, spare units failed, replayed on the written peak trace with
    `replay`: the scenario carries the plan's verdict rules, so the replay judges as the plan
    did and every (region, service) group, every region and the fleet are VALID."""
    out, result, _ = planned
    run = tmp_path / "run"
    res = runner.invoke(
        cli,
        [
            "replay",
            str(out / "scenario.yaml"),
            "--trace",
            str(out / "trace.parquet"),
            "-o",
            str(run),
            "--address",
            "inprocess",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "INVALID" not in res.output
    assert "rules: scenario `verdict:` (no minimum duration, no early stopping" in res.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rules"] == SEARCH_RULES.to_dict()  # the rules the plan judged with
    rows = summary["groups"]  # one per (region, service)
    assert {(r["region"], r["service"]) for r in rows} == {
        (w["region"], w["service"]) for w in result["winners"]
    }
    for r in rows:
        assert r["completed"] == r["offered"] > 0 and r["failed"] == 0
        assert r["verdict"]["result"] == "VALID", r["verdict"]
        assert all(m["percentile_met"] for m in r["verdict"]["metrics"])
    assert all(g["verdict"]["result"] == "VALID" for g in summary["regions"])
    assert summary["fleet"]["verdict"]["result"] == "VALID"


def test_winner_scenario_under_loadgen_rules_says_why(planned, runner, tmp_path):
    """The same fleet without its `verdict:` section is judged by LoadGen Server's rules: a
    few seconds of trace miss the 600 s minimum duration, and the console names the rules."""
    out, _, _ = planned
    doc = yaml.safe_load((out / "scenario.yaml").read_text())
    assert doc["verdict"] == {
        "min_duration_s": 0.0,
        "early_stopping": False,
        "confidence": 0.99,
        "all_ok": True,
    }
    del doc["verdict"]
    loadgen = tmp_path / "loadgen.yaml"
    loadgen.write_text(yaml.safe_dump(doc))
    run = tmp_path / "run"
    args = ["replay", str(loadgen), "--trace", str(out / "trace.parquet"), "-o", str(run)]
    res = runner.invoke(cli, [*args, "--address", "inprocess"])
    assert "rules: LoadGen Server (minimum duration 600 s, early stopping" in res.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rules"] == VerdictRules().to_dict()
    for r in summary["groups"]:
        assert r["verdict"]["result"] == "INVALID"
        assert any("before the min duration" in why for why in r["verdict"]["reasons"])


def test_pareto_front_lists_replayed_candidates(planned):
    _, result, _ = planned
    for service, front in result["pareto"].items():
        assert front
        points = [
            (p["cost_usd_per_year"], p["p99_over_slo"], p["facility_energy_kwh_per_year"])
            for p in front
        ]
        assert pareto_front(points) == list(range(len(points)))
        assert all(p["p99_over_slo"] is not None for p in front), service


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["services"][0]["candidates"].update(tpp=[1]), "candidates.tpp"),
        (lambda d: d["services"][0]["demand"]["us-east"].update(peak_rps=-1), "peak_rps"),
        (lambda d: d["services"][0]["candidates"].update(chips=["tpu-v9"]), "chips[0]"),
        (lambda d: d["services"][0]["candidates"].update(tp=[2]), "candidates.tp"),
        (lambda d: d["services"][1]["demand"].update({"mars": {"peak_rps": 1}}), "demand"),
        (lambda d: d["services"][1].update(model="gpt-9"), "services[1].model"),
        (lambda d: d["services"][1]["candidates"].update(ep=[2]), "candidates.ep"),
        (lambda d: d["search"].update(finalists=0), "search.finalists"),
        (lambda d: d["services"][0].update(slo={}), "services[0].slo"),
        (lambda d: d["services"][0]["candidates"].update(chips=["h100", "h100"]), "chips"),
        (lambda d: d["services"][0]["candidates"].update(max_items=[256, 256]), "max_items"),
    ],
)
def test_bad_plan_is_one_line_exit_2(runner, tmp_path, edit, needle):
    doc = json.loads(json.dumps(PLAN))
    edit(doc)
    path = _write(tmp_path, doc)
    out = tmp_path / "never"
    res = runner.invoke(cli, ["plan", str(path), "-o", str(out), "--address", "inprocess"])
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert str(path) in res.output and needle in res.output
    assert not out.exists()


def test_output_dir_of_someone_else_is_refused_untouched(runner, tmp_path):
    path = _write(tmp_path, PLAN)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    res = runner.invoke(cli, ["plan", str(path), "-o", str(out), "--no-confirm", "--overwrite"])
    assert res.exit_code == 2 and "did not write" in res.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_earlier_plan_output_needs_overwrite(runner, tmp_path):
    path = _write(tmp_path, PLAN)
    out = tmp_path / "p"
    first = runner.invoke(cli, ["plan", str(path), "-o", str(out), "--no-confirm"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli, ["plan", str(path), "-o", str(out), "--no-confirm"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    forced = runner.invoke(cli, ["plan", str(path), "-o", str(out), "--no-confirm", "--overwrite"])
    assert forced.exit_code == 0, forced.output
    result = json.loads((out / "plan.json").read_text())
    assert result["confirmed"] is False and result["replays"] == 0


FINITE = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
POINTS = st.lists(st.tuples(FINITE, FINITE, FINITE), max_size=30)


@given(POINTS)
def test_pareto_front_is_non_dominated_and_covers_the_rest(points):
    front = pareto_front(points)
    for i in front:
        assert not any(dominates(points[j], points[i]) for j in range(len(points)))
    for i in set(range(len(points))) - set(front):
        assert any(dominates(points[j], points[i]) for j in front)


@given(
    st.floats(min_value=0.01, max_value=1e7),
    st.floats(min_value=0.01, max_value=1e6),
    st.integers(min_value=0, max_value=3),
)
def test_units_carry_the_peak_with_the_spare_failed(peak, per_unit, spare):
    n = units_needed(peak, per_unit, spare)
    serving = n - spare
    assert serving >= 1 and serving * per_unit >= peak * (1 - 1e-9)
    assert serving == 1 or (serving - 1) * per_unit < peak


def test_region_figures_follow_the_region_grid(tmp_path):
    """Same demand in two regions: same units and capex; energy priced and its carbon
    counted at each region's grid (cost/data.py), PUE included."""
    from mtia_cluster.catalog import load_catalog
    from mtia_cluster.cost.data import load_cost_data
    from mtia_cluster.planning.plan_file import load_plan
    from mtia_cluster.planning.plan_search import run_plan

    doc = json.loads(json.dumps(PLAN))
    same = {"peak_rps": 300, "peak_to_trough": 2}
    doc["services"][0]["demand"] = {"us-east": same, "eu-west": same}
    doc["services"] = doc["services"][:1]
    cat = load_catalog()
    result = run_plan(load_plan(_write(tmp_path, doc), cat), cat, replays=False)
    grids = load_cost_data().grids
    by = {}
    for c in result["candidates"]:
        if "cost" not in c:
            continue
        cost, grid = c["cost"], grids[c["region"]]
        assert cost["energy_usd_per_year"] == pytest.approx(
            cost["facility_energy_kwh_per_year"] * grid.usd_per_kwh
        )
        assert cost["co2e_t_per_year"] == pytest.approx(
            cost["facility_energy_kwh_per_year"] * grid.gco2e_per_kwh / 1e6
        )
        by.setdefault(c["label"], {})[c["region"]] = cost
    assert by
    for label, regions in by.items():
        a, b = regions["us-east"], regions["eu-west"]
        assert a["units"] == b["units"] and a["capex_usd_per_year"] == b["capex_usd_per_year"]
        ratio = grids["us-east"].pue / grids["eu-west"].pue
        assert a["facility_energy_kwh_per_year"] == pytest.approx(
            b["facility_energy_kwh_per_year"] * ratio
        ), label


def test_moe_expert_parallel_and_pd_candidates_replay(tmp_path):
    """EP on a MoE model and a P:D split are candidates like any other (replayed and
    judged); EP with P:D, which the scenario refuses, is kept out with its reason."""
    from mtia_cluster.catalog import load_catalog
    from mtia_cluster.planning.plan_file import load_plan
    from mtia_cluster.planning.plan_search import run_plan

    doc = {
        "name": "moe",
        "regions": [{"name": "us-east"}],
        "services": [
            {
                "name": "moe",
                "model": "mixtral-8x7b",
                "slo": {"ttft_p99_ms": 2000, "tpot_p99_ms": 100},
                "demand": {"us-east": {"peak_rps": 20}},
                "candidates": {
                    "chips": ["h100"],
                    "tp": [2],
                    "ep": [1, 2],
                    "prefill_share": [0.0, 0.5],
                },
            }
        ],
        "search": {"span_s": 2, "max_requests": 2000, "replay_within": 100, "trim_steps": 0},
    }
    cat = load_catalog()
    result = run_plan(load_plan(_write(tmp_path, doc), cat), cat)
    rows = {(c["settings"]["ep"], c["settings"]["prefill_share"]): c for c in result["candidates"]}
    assert "expert parallelism" in rows[(2, 0.5)]["infeasible"]
    for key in ((1, 0.0), (2, 0.0), (1, 0.5)):
        assert rows[key]["infeasible"] is None and rows[key]["passed"] is not None, key
        assert rows[key]["replay"]["requests"] == 40  # 20 req/s x 2 s
    assert rows[(2, 0.0)]["passed"] and rows[(1, 0.5)]["passed"]


def test_candidate_label_shows_settings_as_the_plan_file_wrote_them() -> None:
    """`max_wait_us: [1000, 2000]` is read as floats; the label shows 1000, not 1000.0, and
    keeps fractions and integers as they are."""
    from mtia_cluster.planning.plan_candidates import Candidate

    settings = {"max_items": 8192, "max_wait_us": 1000.0, "prefill_share": 0.25}
    c = Candidate(
        service="ranking",
        chip="mtia-2i",
        platform="mtia-2i-rack",
        settings=settings,
        unit_hosts=3,
        unit_accelerators=72,
        varied=("max_items", "max_wait_us", "prefill_share"),
    )
    assert c.label == "mtia-2i max_items=8192 max_wait_us=1000 prefill_share=0.25"
    assert Candidate(**{**c.__dict__, "varied": ()}).label == "mtia-2i"


def test_front_lists_candidates_with_identical_figures_once() -> None:
    """Two candidates with exactly the same cost, p99 and energy are one front entry; the
    second is named under the first (console: "(+1 identical)")."""
    from mtia_cluster.cli.plan_cmd import _front_label
    from mtia_cluster.planning.plan_search import _front_entries

    points = [(1.0, 0.5, 3.0), (2.0, 0.1, 3.0), (1.0, 0.5, 3.0)]
    labels = ["a max_wait_us=1000", "b", "a max_wait_us=2000"]
    front = pareto_front(points)
    assert front == [0, 1, 2]
    entries = _front_entries(front, points, labels)
    assert [e["label"] for e in entries] == ["a max_wait_us=1000", "b"]
    assert entries[0]["identical"] == ["a max_wait_us=2000"] and entries[1]["identical"] == []
    assert _front_label(entries[0]) == "a max_wait_us=1000 (+1 identical)"
    assert _front_label(entries[1]) == "b"
