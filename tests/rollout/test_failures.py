"""Failure injection: racks fail and are repaired without any rack lost; same seed, same
timeline; a different seed draws different failures."""

from __future__ import annotations

import numpy as np

from mtia_cluster.fleet.simulate import Cohort, simulate
from rollout.plans import make_plan, plan_dict
from rollout.test_conservation import NEW, OLD, check_invariants

FAILURES = {"mtbf_h": 200.0, "mttr_h": 12.0, "seed": 7, "correlated_prob_per_day": 0.2,
            "correlated_racks": 3}  # fmt: skip


def _run(seed: int = 7, cohorts: dict[str, Cohort] | None = None):
    data = plan_dict(failures={**FAILURES, "seed": seed})
    return data, simulate(make_plan(data), cohorts or {"old": OLD, "new": NEW})


def test_failures_happen_and_conserve_racks() -> None:
    data, res = _run()
    check_invariants(data, res)
    failed = np.asarray(res.timeline["racks_old_failed"]) + res.timeline["racks_new_failed"]
    assert failed.max() > 0
    n_fail = sum(e["racks"] for e in res.events if e["event"] == "failure")
    n_repair = sum(e["racks"] for e in res.events if e["event"] == "repair")
    # every failed rack is repaired or still failed at the end: none lost
    still = int(failed[-2:].sum())
    assert n_fail == n_repair + still
    assert [w.state for w in res.waves] == ["done", "done"]


def test_same_seed_identical_timeline() -> None:
    _, a = _run(seed=11)
    _, b = _run(seed=11)
    assert a.timeline == b.timeline
    assert a.events == b.events


def test_different_seed_different_failures() -> None:
    _, a = _run(seed=1)
    _, b = _run(seed=2)
    assert a.timeline["racks_old_failed"] != b.timeline["racks_old_failed"]


def test_no_failures_without_failure_model() -> None:
    data = plan_dict()
    res = simulate(make_plan(data), {"old": OLD, "new": NEW})
    assert max(res.timeline["racks_old_failed"]) == 0
    assert not [e for e in res.events if e["event"] in ("failure", "repair")]
