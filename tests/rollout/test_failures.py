"""Failure injection: racks fail and are repaired without any rack lost; same seed, same
timeline; a different seed draws different failures."""

from __future__ import annotations

import numpy as np

from mtia_cluster.rollout.timeline import Cohort, run_timeline
from rollout.plans import make_plan, plan_dict
from rollout.test_conservation import NEW, OLD, check_invariants

FAILURES = {"mtbf_h": 200.0, "mttr_h": 12.0, "seed": 7, "correlated_prob_per_day": 0.2,
            "correlated_racks": 3}  # fmt: skip


def _run(seed: int = 7, cohorts: dict[str, Cohort] | None = None):
    data = plan_dict(failures={**FAILURES, "seed": seed})
    return data, run_timeline(make_plan(data), cohorts or {"old": OLD, "new": NEW})


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
    res = run_timeline(make_plan(data), {"old": OLD, "new": NEW})
    assert max(res.timeline["racks_old_failed"]) == 0
    assert not [e for e in res.events if e["event"] in ("failure", "repair")]


PARTS = [{"part": "host", "mtbf_h": 300.0, "mttr_h": 24.0}]


def _parts_run(parts: list[dict], rack_failures: bool = True, seed: int = 7):
    failures = {**FAILURES, "seed": seed} if rack_failures else {"seed": seed}
    data = plan_dict(failures={**failures, "parts": parts})
    return data, run_timeline(make_plan(data), {"old": OLD, "new": NEW})


def test_host_failures_take_their_share_of_rack_capacity() -> None:
    """MTIA 2i racks have 3 hosts, MTIA 400 racks 18: each failed host takes 1/3 or 1/18 of
    its rack's capacity; racks are conserved; every failure is repaired or still pending."""
    data, res = _parts_run(PARTS)
    check_invariants(data, res)
    tl = {k: np.asarray(v) for k, v in res.timeline.items()}
    assert tl["parts_down_old"].max() > 0 and tl["parts_down_new"].max() > 0
    expect = tl["parts_down_old"] * OLD.rps / 3 + tl["parts_down_new"] * NEW.rps / 18
    np.testing.assert_allclose(tl["degraded_rps"], expect, rtol=1e-12)
    n_fail = sum(e["racks"] for e in res.events if e["event"] == "host_failure")
    n_repair = sum(e["racks"] for e in res.events if e["event"] == "host_repair")
    assert n_fail > n_repair > 0


def test_part_failures_use_their_own_stream() -> None:
    """Adding part failures changes capacity, not the rack failures drawn (separate stream);
    the same seed gives the same timeline."""
    _, without = _run(seed=5)
    _, with_parts = _parts_run(PARTS, seed=5)
    kinds = ("failure", "repair")
    assert [e for e in without.events if e["event"] in kinds] == [
        e for e in with_parts.events if e["event"] in kinds
    ]
    _, again = _parts_run(PARTS, seed=5)
    assert again.timeline == with_parts.timeline


def test_part_failures_alone_need_no_rack_mtbf() -> None:
    data, res = _parts_run([{"part": "accelerator", "mtbf_h": 2000.0, "mttr_h": 48.0}], False)
    check_invariants(data, res)
    assert max(res.timeline["racks_old_failed"]) == 0  # no whole-rack failures
    tl = {k: np.asarray(v) for k, v in res.timeline.items()}
    # MTIA 2i rack: 72 accelerators; MTIA 400 rack: 72
    expect = tl["parts_down_old"] * OLD.rps / 72 + tl["parts_down_new"] * NEW.rps / 72
    np.testing.assert_allclose(tl["degraded_rps"], expect, rtol=1e-12)
    assert tl["parts_down_old"].max() + tl["parts_down_new"].max() > 0
