"""Whole-region outages on the rollout timeline: scheduled and drawn, failover of their demand
(none: lost; proportional: shared by capacity), gates that wait, summary figures."""

from __future__ import annotations

import numpy as np
import pytest

from mtia_cluster.rollout.moments import pick_moments
from mtia_cluster.rollout.run import rollout_summary
from mtia_cluster.rollout.timeline import TimelineResult, run_timeline
from rollout.plans import make_plan, plan_dict
from rollout.test_conservation import NEW, OLD, check_failover, check_invariants

COHORTS = {"old": OLD, "new": NEW}
# three regions, flat demand at 50% of their old capacity (OLD: 1e6 req/s per rack)
REGIONS = [
    {"name": "a", "racks": {"mtia-2i": 10}, "demand": {"peak_rps": 5.0e6}},
    {"name": "b", "racks": {"mtia-2i": 20}, "demand": {"peak_rps": 1.0e7}},
    {"name": "c", "racks": {"mtia-2i": 10}, "demand": {"peak_rps": 5.0e6}},
]


def _plan(**changes):
    base = {"fleet.regions": REGIONS, "waves": [["a"], ["b"], ["c"]]}
    return plan_dict(**{**base, **changes})


def _col(res: TimelineResult, name: str) -> np.ndarray:
    return np.asarray(res.timeline[name])


def _rows(res: TimelineResult, region: str) -> np.ndarray:
    return _col(res, "region") == region


def _hours(res: TimelineResult) -> np.ndarray:
    return _col(res, "time_ns") / 3.6e12


def test_scheduled_outage_fails_over_in_proportion_to_capacity() -> None:
    """Region a is down from hour 48 for 10 steps (9.5 h rounds up): capacity 0, its demand
    shared by b and c in proportion to their capacity at that step."""
    data = _plan(outages=[{"region": "a", "at_day": 2, "duration_h": 9.5}])
    res = run_timeline(make_plan(data), COHORTS)
    check_invariants(data, res)
    h, a = _hours(res), _rows(res, "a")
    down = ~_col(res, "region_up").astype(bool)
    assert (
        sorted(h[down].tolist()) == list(range(48, 58)) and (down == a & (h >= 48) & (h < 58)).all()
    )
    assert (_col(res, "capacity_rps")[down] == 0).all()
    np.testing.assert_array_equal(
        _col(res, "failover_out_rps")[down], _col(res, "demand_rps")[down]
    )
    got, cap = _col(res, "failover_in_rps"), _col(res, "capacity_rps")
    at = h == 50
    b, c = at & _rows(res, "b"), at & _rows(res, "c")
    assert np.isclose(got[b][0] / got[c][0], cap[b][0] / cap[c][0])
    assert np.isclose(got[b][0] + got[c][0], 5.0e6)
    offered = _col(res, "offered_rps")
    assert np.isclose(offered[b][0], 1.0e7 + got[b][0]) and (got[~at] == 0).sum() > 0
    assert (got[(h < 48) | (h >= 58)] == 0).all()
    ev = [(e["event"], e["region"], e["time_ns"] / 3.6e12) for e in res.events
          if e["event"].startswith("region_")]  # fmt: skip
    assert ev == [("region_failure", "a", 48.0), ("region_repair", "a", 58.0)]
    s = rollout_summary(make_plan(data), res, "fast")["outages"]
    assert s["count"] == 1 and s["outage_minutes"] == 600.0
    assert s["lost_requests"] == 0 and np.isclose(s["failover_requests"], 5.0e6 * 10 * 3600)
    assert s["slo_violation_minutes_caused"] == 0  # b and c had 50% headroom
    assert s["worst_headroom_region"] in ("b", "c") and 47.9 < s["worst_headroom_day"] * 24 < 58


def test_failover_none_loses_demand_and_counts_violation_minutes() -> None:
    data = _plan(outages=[{"region": "c", "at_day": 1, "duration_h": 6}], failover="none")
    plan = make_plan(data)
    res = run_timeline(plan, COHORTS)
    check_invariants(data, res)
    down = ~_col(res, "region_up").astype(bool)
    assert down.sum() == 6
    np.testing.assert_array_equal(_col(res, "lost_rps")[down], _col(res, "demand_rps")[down])
    assert (_col(res, "failover_in_rps") == 0).all()
    assert not _col(res, "slo_ok")[down].any()
    s = rollout_summary(plan, res, "fast")
    assert s["outages"]["slo_violation_minutes_caused"] == 360.0
    assert s["regions"][2]["slo_violation_minutes"] >= 360.0
    assert np.isclose(s["outages"]["lost_requests"], 5.0e6 * 6 * 3600)


def test_remaining_regions_cannot_absorb_while_a_wave_drains() -> None:
    """Demand at 80% of capacity: b going down sends 2x a's and c's demand their way; the
    overload is counted as SLO-violation minutes caused by the outage, not by the rollout."""
    regions = [{**r, "demand": {"peak_rps": r["demand"]["peak_rps"] * 1.6}} for r in REGIONS]
    data = _plan(**{"fleet.regions": regions},
                 outages=[{"region": "b", "at_day": 0.25, "duration_h": 4}])  # fmt: skip
    plan = make_plan(data)
    res = run_timeline(plan, COHORTS)
    check_invariants(data, res)
    s = rollout_summary(plan, res, "fast")
    assert s["outages"]["worst_headroom_during"] < 0
    assert s["outages"]["slo_violation_minutes_caused"] > 0
    assert s["slo_violation_minutes"] >= s["outages"]["slo_violation_minutes_caused"]
    with_none = run_timeline(make_plan({**data, "failover": "none"}), COHORTS)
    s_none = rollout_summary(make_plan({**data, "failover": "none"}), with_none, "fast")["outages"]
    assert s_none["slo_violation_minutes_caused"] == 240.0  # only b's own minutes


def test_gate_waits_while_its_region_is_down() -> None:
    """A 30 h outage of region a over its wave's gate time delays the gate until a has been
    up for a whole gate window (24 h) after the repair; the gate then passes."""
    base = run_timeline(make_plan(_plan()), COHORTS)
    gate_h = next(e["time_ns"] for e in base.events if e["event"] == "gate_pass") / 3.6e12
    data = _plan(outages=[{"region": "a", "at_day": (gate_h - 2) / 24, "duration_h": 30}])
    res = run_timeline(make_plan(data), COHORTS)
    check_invariants(data, res)
    repair = next(e for e in res.events if e["event"] == "region_repair")
    gate = next(e for e in res.events if e["event"] in ("gate_pass", "gate_fail"))
    assert gate["event"] == "gate_pass"
    assert gate["time_ns"] == repair["time_ns"] + 24 * 3.6e12 == (gate_h + 52) * 3.6e12


def _drawn(seed: int, **extra) -> TimelineResult:
    data = _plan(failures={"seed": seed, "region": {"mtbf_h": 100, "mttr_h": 10}, **extra},
                 **{"timeline.horizon_days": 60})  # fmt: skip
    res = run_timeline(make_plan(data), COHORTS)
    check_invariants(data, res)
    return res


def _region_events(res: TimelineResult) -> list[tuple]:
    return [(e["time_ns"], e["region"], e["event"]) for e in res.events
            if e["event"].startswith("region_")]  # fmt: skip


def test_drawn_outages_are_seeded_and_independent_of_rack_failures() -> None:
    a, b = _drawn(3), _drawn(3)
    assert a.timeline == b.timeline and a.events == b.events
    assert _region_events(a) != _region_events(_drawn(4))
    racks = _drawn(3, mtbf_h=300, mttr_h=12)  # rack failures drawn from their own streams
    assert _region_events(racks) == _region_events(a)
    assert sum(e["event"] == "failure" for e in racks.events) > 0


def test_drawn_outage_count_matches_the_renewal_mean() -> None:
    """Over 60 days x 3 regions, MTBF 100 h and MTTR 10 h (down whole steps: mean ~10.5 h,
    up ~100.5 steps): failures ~ 3 x 1440 / 111 = 38.9; within 5 sigma (Poisson-like)."""
    n = sum(sum(e[2] == "region_failure" for e in _region_events(_drawn(s))) for s in range(5))
    mean = 5 * 3 * 1440 / (100.5 + 10.5)
    assert abs(n - mean) < 5 * np.sqrt(mean), (n, mean)


def test_moments_skip_down_regions_and_use_offered_demand() -> None:
    data = _plan(outages=[{"region": "b", "at_day": 0.5, "duration_h": 12}])
    res = run_timeline(make_plan(data), COHORTS)
    up = _col(res, "region_up").astype(bool)
    picked = pick_moments(res)
    assert picked and all(up[j] for _, _, j in picked)
    ((_, _, worst),) = [p for p in picked if p[0] == "worst_headroom"]
    assert _col(res, "failover_in_rps")[worst] > 0  # the worst hour is during b's outage


@pytest.mark.parametrize("failover", ["none", "proportional"])
def test_no_outage_changes_nothing(failover: str) -> None:
    a = run_timeline(make_plan(_plan()), COHORTS)
    b = run_timeline(make_plan(_plan(failover=failover)), COHORTS)
    assert a.timeline == b.timeline
    np.testing.assert_array_equal(_col(a, "offered_rps"), _col(a, "demand_rps"))
    check_failover(a)


def test_drawn_outages_change_no_rack_or_part_draw() -> None:
    """With no gate inside the horizon (bake longer than it) outages cannot move the waves, so
    the rack and part failures drawn from their own streams are the same with and without
    drawn region outages; only capacity, failover and the region events differ."""
    parts = [{"part": "host", "mtbf_h": 500, "mttr_h": 8}]
    rack_faults = {"seed": 5, "mtbf_h": 300, "mttr_h": 12, "parts": parts}
    common = {"rollout.bake_days": 100, "timeline.horizon_days": 30}
    base = run_timeline(make_plan(_plan(failures=rack_faults, **common)), COHORTS)
    regions = {**rack_faults, "region": {"mtbf_h": 50, "mttr_h": 5}}
    data = _plan(failures=regions, **common)
    res = run_timeline(make_plan(data), COHORTS)
    check_invariants(data, res)
    assert _region_events(res) and not _region_events(base)
    keep = [e for e in res.events if not e["event"].startswith("region_")]
    assert keep == base.events
    for col in [c for c in base.timeline if c.startswith(("racks_", "parts_down"))]:
        assert res.timeline[col] == base.timeline[col]
