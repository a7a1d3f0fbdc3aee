"""Racks and capacity are conserved through drains, swaps, rollbacks and failures."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.rollout.region import STATES, VERSIONS
from mtia_cluster.rollout.timeline import Cohort, TimelineResult, run_timeline
from rollout.plans import make_plan, plan_dict

OLD = Cohort("old-gen", 1.0e6, 20_000.0, 0.05, 0.0)
NEW = Cohort("new-gen", 2.5e6, 30_000.0, 0.05, 0.0)


@st.composite
def random_plans(draw: st.DrawFn) -> dict:
    n_regions = draw(st.integers(1, 4))
    regions = [
        {
            "name": f"r{i}",
            "racks": {"mtia-2i": draw(st.integers(2, 30))},
            "demand": {
                "peak_rps": draw(st.floats(1e5, 5e7)),
                "peak_to_trough": draw(st.floats(1.0, 4.0)),
                "tz_offset_h": draw(st.integers(-12, 14)),
                "weekly_growth_pct": draw(st.floats(0.0, 10.0)),
            },
        }
        for i in range(n_regions)
    ]
    names = [r["name"] for r in regions]
    cut = draw(st.integers(1, n_regions))
    waves = [names[:cut]] + ([names[cut:]] if cut < n_regions else [])
    data = plan_dict(
        **{
            "fleet.regions": regions,
            "waves": waves,
            "rollout.install_racks_per_day": draw(st.floats(0.5, 48.0)),
            "rollout.swap_time_h": {
                "drain": draw(st.floats(0.0, 6.0)),
                "install": draw(st.floats(0.0, 48.0)),
                "burnin": draw(st.floats(0.0, 24.0)),
            },
            "rollout.drain_budget": draw(st.floats(0.5, 1.0)),
            "rollout.bake_days": draw(st.floats(0.0, 2.0)),
            "timeline.step_h": draw(st.sampled_from([0.5, 1.0, 3.0])),
            "timeline.horizon_days": draw(st.floats(1.0, 12.0)),
        }
    )
    if draw(st.booleans()):
        data["events"] = [
            {
                "at_day": draw(st.floats(0.0, 0.999)) * data["timeline"]["horizon_days"],
                "region": draw(st.sampled_from(names)),
                "kind": draw(st.sampled_from(["add", "remove"])),
                "racks": {draw(st.sampled_from(["mtia-2i", "mtia-400"])): draw(st.integers(1, 8))},
            }
            for _ in range(draw(st.integers(1, 4)))
        ]
    if draw(st.booleans()):
        data["failures"] = {
            "mtbf_h": draw(st.floats(50.0, 5000.0)),
            "mttr_h": draw(st.floats(1.0, 72.0)),
            "seed": draw(st.integers(0, 2**31)),
            "correlated_prob_per_day": draw(st.floats(0.0, 0.5)),
            "correlated_racks": draw(st.integers(0, 5)),
        }
        if draw(st.booleans()):
            data["failures"]["parts"] = [
                {"part": p, "mtbf_h": draw(st.floats(20.0, 5000.0)),
                 "mttr_h": draw(st.floats(1.0, 48.0))}
                for p in draw(st.sets(st.sampled_from(["host", "accelerator"]), min_size=1))
            ]  # fmt: skip
    if draw(st.booleans()):
        horizon = data["timeline"]["horizon_days"]
        data["outages"] = [
            {
                "region": draw(st.sampled_from(names)),
                "at_day": draw(st.floats(0.0, 0.999)) * horizon,
                "duration_h": draw(st.floats(0.1, 72.0)),
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
        data["failover"] = draw(st.sampled_from(["none", "proportional"]))
    if draw(st.booleans()):
        failures = data.setdefault("failures", {"seed": draw(st.integers(0, 2**31))})
        failures["region"] = {
            "mtbf_h": draw(st.floats(10.0, 500.0)),
            "mttr_h": draw(st.floats(0.5, 48.0)),
        }
    return data


def _column(res: TimelineResult, name: str) -> np.ndarray:
    return np.asarray(res.timeline[name])


def _expected_racks(data: dict, res: TimelineResult) -> np.ndarray:
    """Per timeline row: initial racks + racks added - racks gone, by the event log."""
    racks = {r["name"]: sum(r["racks"].values()) for r in data["fleet"]["regions"]}
    region, t = _column(res, "region"), _column(res, "time_ns")
    expected = np.array([racks[r] for r in region], dtype=np.int64)
    for e in res.events:
        sign = {"rack_add": 1, "rack_gone": -1}.get(e["event"], 0)
        if sign:
            expected += sign * e["racks"] * ((region == e["region"]) & (t >= e["time_ns"]))
    return expected


def check_invariants(data: dict, res: TimelineResult) -> None:
    counts = {(v, s): _column(res, f"racks_{v}_{s}") for v in VERSIONS for s in STATES}
    total = np.sum(list(counts.values()), axis=0)
    expected = _expected_racks(data, res)
    assert (total == expected).all()
    assert (_column(res, "racks_total") == expected).all()
    assert all((c >= 0).all() for c in counts.values())
    full = counts[("old", "serving")] * OLD.rps + counts[("new", "serving")] * NEW.rps
    degraded = _column(res, "degraded_rps")
    assert (degraded >= 0).all() and (degraded <= full * (1 + 1e-12)).all()
    up = _column(res, "region_up").astype(bool)
    cap = np.where(up, full - degraded, 0.0)  # a region that is down has capacity 0
    np.testing.assert_allclose(_column(res, "capacity_rps"), cap, rtol=1e-12, atol=1e-6)
    for v in VERSIONS:  # failed parts count only against serving racks
        down = _column(res, f"parts_down_{v}")
        assert (down >= 0).all() and (down[counts[(v, "serving")] == 0] == 0).all()
    if not data.get("events"):  # with events, arriving racks are not in the timeline
        swapping = sum(
            counts[(v, s)] for v in VERSIONS for s in ("draining", "installing", "burnin")
        )
        budget = np.floor(data["rollout"]["drain_budget"] * expected + 1e-9)
        assert (swapping <= budget).all()
    _check_events(data, res)
    check_failover(res)
    offered, lost = _column(res, "offered_rps"), _column(res, "lost_rps")
    assert (_column(res, "slo_ok") == np.where(up, offered <= cap, lost <= 0)).all()


def check_failover(res: TimelineResult) -> None:
    """Per step, total demand before failover == demand offered after + demand lost; what
    the regions that are down send equals what the others receive; a region that is up
    sends and loses nothing, one that is down receives nothing and is offered nothing."""
    t = _column(res, "time_ns")
    up = _column(res, "region_up").astype(bool)
    demand, offered = _column(res, "demand_rps"), _column(res, "offered_rps")
    sent, got, lost = (_column(res, c) for c in ("failover_out_rps", "failover_in_rps", "lost_rps"))
    for now in np.unique(t):
        m = t == now
        assert np.isclose(demand[m].sum(), offered[m].sum() + lost[m].sum(), rtol=1e-12)
        assert np.isclose(sent[m].sum(), got[m].sum(), rtol=1e-12, atol=1e-9)
    assert (sent[up] == 0).all() and (lost[up] == 0).all() and (got[~up] == 0).all()
    assert (offered[~up] == 0).all()
    np.testing.assert_array_equal((sent + lost)[~up], demand[~up])
    assert (got >= 0).all() and (lost >= 0).all()


@settings(max_examples=40, deadline=None)
@given(random_plans())
def test_racks_and_capacity_conserved_every_step(data: dict) -> None:
    res = run_timeline(make_plan(data), {"old": OLD, "new": NEW})
    check_invariants(data, res)


@settings(max_examples=20, deadline=None)
@given(random_plans())
def test_rollback_conserves_racks(data: dict) -> None:
    """A regressed new version trips the gate; the rollback returns racks to old, none lost."""
    bad = Cohort("new-bad", NEW.rps, NEW.power_w, 0.5, 0.0)  # p99 5x the SLO of 100 ms
    data["rollout"]["bake_days"] = 0.5
    res = run_timeline(make_plan(data), {"old": OLD, "new": bad})
    check_invariants(data, res)
    states = {w.state for w in res.waves}
    assert "done" not in states


def test_full_swap_ends_with_every_rack_new() -> None:
    data = plan_dict()
    res = run_timeline(make_plan(data), {"old": OLD, "new": NEW})
    check_invariants(data, res)
    assert [w.state for w in res.waves] == ["done", "done"]
    last = _column(res, "time_ns") == max(res.timeline["time_ns"])
    assert (_column(res, "racks_new_serving")[last] == [10, 20]).all()
    assert (_column(res, "racks_old_serving")[last] == 0).all()
    assert math.isclose(float(_column(res, "capacity_rps")[last].sum()), 30 * NEW.rps)


def _check_events(data: dict, res: TimelineResult) -> None:
    """Every add arrives in full (or is logged as not reached); removals take at most what
    was asked; a rack is gone only after its removal started."""
    asked = {}
    for e in data.get("events", []):
        for n in e["racks"].values():
            key = (e["region"], e["kind"])
            asked[key] = asked.get(key, 0) + n
    log = {}
    for e in res.events:
        if e["event"] == "rack_event_not_reached" and e["detail"].startswith("add"):
            log[(e["region"], "rack_add")] = log.get((e["region"], "rack_add"), 0) + e["racks"]
        if e["event"] in ("rack_add", "rack_remove", "rack_gone"):
            log[(e["region"], e["event"])] = log.get((e["region"], e["event"]), 0) + e["racks"]
    for (region, kind), n in asked.items():
        if kind == "add":
            assert log.get((region, "rack_add"), 0) == n
        else:
            assert log.get((region, "rack_remove"), 0) <= n
    for region in {r["name"] for r in data["fleet"]["regions"]}:
        assert log.get((region, "rack_gone"), 0) <= log.get((region, "rack_remove"), 0)


def test_greenfield_region_and_decommission() -> None:
    """An empty region gets 4 new racks at day 1 (install 4 h + burn-in 2 h): they serve from
    hour 30; 3 old racks removed at day 2 are gone after the 1 h drain."""
    data = plan_dict(
        **{
            "fleet.regions": [
                {"name": "a", "racks": {"mtia-2i": 10}, "demand": {"peak_rps": 1.0e6}},
                {"name": "g", "racks": {}, "demand": {"peak_rps": 1.0e6}},
            ],
            "waves": [["g"]],
            "events": [
                {"at_day": 1, "region": "g", "kind": "add", "racks": {"mtia-400": 4}},
                {"at_day": 2, "region": "a", "kind": "remove", "racks": {"mtia-2i": 3}},
            ],
            "timeline.horizon_days": 4,
        }
    )
    res = run_timeline(make_plan(data), {"old": OLD, "new": NEW})
    check_invariants(data, res)
    t_h = _column(res, "time_ns") / 3.6e12
    region = _column(res, "region")
    g, a = region == "g", region == "a"
    serving = _column(res, "racks_new_serving")
    assert (serving[g & (t_h < 30)] == 0).all() and (serving[g & (t_h >= 30)] == 4).all()
    assert (_column(res, "capacity_rps")[g & (t_h >= 30)] == 4 * NEW.rps).all()
    assert not _column(res, "slo_ok")[g & (t_h < 30)].any()  # no capacity before install
    total = _column(res, "racks_total")
    assert (total[a & (t_h < 49)] == 10).all() and (total[a & (t_h >= 49)] == 7).all()
    old_serving = _column(res, "racks_old_serving")
    assert (old_serving[a & (t_h >= 48)] == 7).all()
    # region g (a wave of new racks only) is already "swapped": its gate passes
    assert res.waves[0].state == "done"


def test_removal_takes_only_serving_racks() -> None:
    data = plan_dict(
        **{
            "events": [{"at_day": 0, "region": "a", "kind": "remove", "racks": {"mtia-2i": 50}}],
            "timeline.horizon_days": 2,
        }
    )
    res = run_timeline(make_plan(data), {"old": OLD, "new": NEW})
    check_invariants(data, res)
    (ev,) = [e for e in res.events if e["event"] == "rack_remove"]
    assert ev["racks"] == 10  # region a has 10 racks: all of them, not 50
    t = _column(res, "time_ns")
    last = (_column(res, "region") == "a") & (t == t.max())
    assert (_column(res, "racks_total")[last] == 0).all()
