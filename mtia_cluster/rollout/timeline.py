"""Time-stepped rollout simulation at region level (see docs/rollout.md).

Each step (plan.timeline.step_h) and each region: swaps in flight advance, failed racks are
repaired, new failures are drawn from the region's own seeded stream, the wave state machine
moves (a wave starts when the previous one has passed its gate; it is "swapped" when all its
regions hold only new racks; after bake_days its health gate is judged on the last window_h
of timeline metrics, or, when a `gate_hook` is given, on an exact replay of the window's
highest-load hour (moment_replay.py); a failed gate pauses or rolls the wave back), the active
wave's regions start swaps at the install rate within the drain budget, and one timeline row
is recorded: capacity = sum of serving racks' capacities, demand from the diurnal/growth
profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.rollout.outages import Outage, OutageState, RegionFailureSpec, apply_failover
from mtia_cluster.rollout.parts import PartState
from mtia_cluster.rollout.plan import Plan, Region
from mtia_cluster.rollout.rack_events import RackEvent
from mtia_cluster.rollout.region import STATES, VERSIONS, RegionState
from mtia_cluster.units import NS_PER_DAY, NS_PER_H


@dataclass
class Cohort:
    """Per-rack figures of one version: capacity, power and the gate's health metrics."""

    label: str
    rps: float
    power_w: float
    p99_s: float
    error_rate: float
    source: str = "fast"  # where rps came from: fast (cost model) | replay
    rps_upper: float | None = None  # replay search: lowest failing rate per rack (None: n/a)
    capacity_detail: str = ""  # how rps was obtained (search group, window, SLO)


@dataclass
class Wave:
    regions: tuple[str, ...]
    state: str = "pending"  # pending|swapping|baking|done|paused|rolling_back|rolled_back|cancelled
    start_ns: int = -1
    swapped_ns: int = -1
    end_ns: int = -1


@dataclass
class TimelineResult:
    """Timeline columns, event rows and the facts the summary needs."""

    timeline: dict[str, list[Any]]
    events: list[dict[str, Any]]
    waves: list[Wave]
    cohorts: dict[str, Cohort]
    step_ns: int
    gate_results: list[dict[str, Any]] = field(default_factory=list)
    # (result, timeline row, wave) -> replay row with new_p99_s, new_error_rate (None: the
    # gates use the timeline's analytic cohort metrics)
    gate_hook: GateHook | None = None
    replays: list[dict[str, Any]] = field(default_factory=list)


GateHook = Callable[["TimelineResult", int, int], dict[str, Any]]


def demand_rps(region: Region, t_ns: np.ndarray | int) -> np.ndarray:
    """Requests/s of `region` at UTC time t: peak x weekly growth x diurnal shape (a cosine
    between 1 at the local peak hour and 1/peak_to_trough twelve hours away)."""
    d = region.demand
    t_h = np.asarray(t_ns, dtype=np.float64) / NS_PER_H
    local_h = t_h + d.tz_offset_h
    low = 1.0 / d.peak_to_trough
    shape = low + (1.0 - low) * 0.5 * (1.0 + np.cos(2 * np.pi * (local_h - d.peak_hour_local) / 24))
    growth = (1.0 + d.weekly_growth_pct / 100.0) ** (t_h / (24.0 * 7.0))
    return np.asarray(d.peak_rps * growth * shape)


def run_timeline(
    plan: Plan, cohorts: dict[str, Cohort], gate_hook: GateHook | None = None
) -> TimelineResult:
    """Run the plan's timeline with per-rack figures `cohorts` ({"old": .., "new": ..});
    gates judged on `gate_hook` rows when given."""
    step_ns = round(plan.step_h * NS_PER_H)
    steps = math.ceil(plan.horizon_days * 24.0 / plan.step_h)
    res = TimelineResult(_empty_timeline(), [], [Wave(w) for w in plan.waves], cohorts, step_ns)
    res.gate_hook = gate_hook
    run = _Run.new(plan)
    for k in range(steps):
        _step(plan, res, run, k, k * step_ns)
    for ev in plan.rack_events[run.next_rack_event :]:  # after the last step
        late = _wave_event(ev.at_ns, run.region_wave.get(ev.region, -1), "rack_event_not_reached",
                           f"{ev.kind} {ev.racks} {ev.generation}")  # fmt: skip
        res.events.append({**late, "region": ev.region, "racks": ev.racks})
    for st in run.regions.values():
        for t, kind, version, n in st.events:
            ev = _event(t, st.name, kind, version, n, cohorts)
            ev["wave"] = run.region_wave.get(st.name, -1)
            res.events.append(ev)
    res.events.sort(key=lambda e: (e["time_ns"], e["region"], e["event"]))
    return res


@dataclass
class _Run:
    """The timeline's state between steps: regions, their seeded streams, part failures,
    outages, the next scheduled rack event and outage, and when each region was last down."""

    regions: dict[str, RegionState]
    rngs: dict[str, np.random.Generator]  # rack failures, per region
    part_rngs: list[np.random.Generator]  # part failures, per region index
    parts: dict[str, PartState]
    region_wave: dict[str, int]
    outages: OutageState
    drawn: RegionFailureSpec | None  # drawn whole-region outages
    last_down: dict[str, int]  # last step a region was down
    next_rack_event: int = 0
    next_outage: int = 0

    @classmethod
    def new(cls, plan: Plan) -> _Run:
        src, dst = plan.target.from_generation, plan.target.to_generation
        regions = {
            r.name: RegionState.new(
                r.name,
                r.racks.get(src, 0),
                r.racks.get(dst, 0) if dst != src else 0,
                plan.drain_h,
                plan.install_h,
                plan.burnin_h,
            )
            for r in plan.regions
        }
        seed = plan.failures.seed if plan.failures else 0
        n = len(plan.regions)
        drawn = plan.failures.region if plan.failures else None
        return cls(
            regions=regions,
            rngs={
                r.name: entity_rng(seed, StreamKind.ROLLOUT_RACK_FAILURES, i)
                for i, r in enumerate(plan.regions)
            },
            part_rngs=[entity_rng(seed, StreamKind.ROLLOUT_PART_FAILURES, i) for i in range(n)],
            parts={r.name: PartState() for r in plan.regions},
            region_wave={name: i for i, w in enumerate(plan.waves) for name in w},
            outages=OutageState.new(
                [r.name for r in plan.regions], plan.step_h, seed, drawn is not None
            ),
            drawn=drawn,
            last_down={r.name: -(2**62) for r in plan.regions},
        )


def _step(plan: Plan, res: TimelineResult, run: _Run, k: int, now: int) -> None:
    """Step k: rack events and outages due, swaps, repairs and failures in every region, the
    wave state machine, new swaps, one row per region and the failover of down regions."""
    rack_events = plan.rack_events
    while run.next_rack_event < len(rack_events) and rack_events[run.next_rack_event].at_ns <= now:
        _rack_event(plan, res, run.regions, run.region_wave, rack_events[run.next_rack_event], now)
        run.next_rack_event += 1
    due = []
    while run.next_outage < len(plan.outages) and plan.outages[run.next_outage].at_ns <= now:
        due.append(plan.outages[run.next_outage])
        run.next_outage += 1
    up_list = _outages_step(res, run.outages, k, now, due, run.drawn, run.region_wave)
    for r, u in zip(plan.regions, up_list, strict=True):
        run.last_down[r.name] = run.last_down[r.name] if u else now
    for i, r in enumerate(plan.regions):
        st = run.regions[r.name]
        st.advance(now)
        st.repair(now)
        if plan.failures is not None:
            _draw_failures(plan, st, run.rngs[r.name], now)
            if plan.failures.parts:
                serving = {v: st.counts[(v, "serving")] for v in VERSIONS}
                run.parts[r.name].step(
                    now, run.part_rngs[i], plan.failures.parts, plan.step_h, serving, st.events
                )
    _waves_step(plan, res, run.regions, now, run.last_down)
    for r in plan.regions:
        wave = run.region_wave.get(r.name)
        _start_swaps(plan, res, run.regions[r.name], wave, now)
        _record(plan, res, r, run.regions[r.name], run.parts[r.name], wave, now)
    _failover(res.timeline, up_list, plan.failover)


def _outages_step(
    res: TimelineResult,
    outages: OutageState,
    k: int,
    now: int,
    due: list[Outage],
    drawn: RegionFailureSpec | None,
    region_wave: dict[str, int],
) -> list[bool]:
    """Which regions are up during step k; region_failure / region_repair events."""
    logged: list[dict[str, Any]] = []
    up = outages.step(k, now, due, drawn, logged)
    for e in logged:
        row = _wave_event(now, region_wave.get(e["region"], -1), e["event"], e["detail"])
        res.events.append({**row, "region": e["region"]})
    return up


def _rack_event(
    plan: Plan,
    res: TimelineResult,
    regions: dict[str, RegionState],
    region_wave: dict[str, int],
    ev: RackEvent,
    now: int,
) -> None:
    """Add or remove racks (rack_events.py). A generation's racks are its version; in a
    model-version rollout added racks get the new version once the region's wave has started
    (and not rolled back), and removals take old racks first."""
    st = regions[ev.region]
    drain, install, burnin = ev.phase_ns
    t = plan.target
    if t.kind == "generation":
        versions = ["old" if ev.generation == t.from_generation else "new"]
    else:
        w = region_wave.get(ev.region)
        live = ("swapping", "baking", "done", "paused")
        deployed = w is not None and res.waves[w].state in live
        versions = ["new" if deployed else "old"] if ev.kind == "add" else ["old", "new"]
    if ev.kind == "add":
        st.add_racks(now, versions[0], ev.racks, install, burnin)
        return
    left = ev.racks
    for v in versions:
        left -= st.remove_racks(now, v, left, drain)


def _draw_failures(plan: Plan, st: RegionState, rng: np.random.Generator, now: int) -> None:
    f = plan.failures
    assert f is not None
    p_fail = 0.0 if f.mtbf_h is None else 1.0 - math.exp(-plan.step_h / f.mtbf_h)
    p_event = 1.0 - (1.0 - f.correlated_prob_per_day) ** (plan.step_h / 24.0)
    extra = f.correlated_racks if rng.random() < p_event else 0
    st.fail(now, rng, p_fail, f.mttr_h, extra)


def _waves_step(
    plan: Plan,
    res: TimelineResult,
    regions: dict[str, RegionState],
    now: int,
    last_down: dict[str, int],
) -> None:
    """Advance the wave state machine by one step (at most one transition per wave). A gate
    waits until every region of its wave has been up for a whole gate window (after a
    whole-region outage), so it is judged on a full window of serving rows."""
    window_ns = round(plan.gates.window_h * NS_PER_H)
    for i, w in enumerate(res.waves):
        if w.state == "pending":
            prev = res.waves[i - 1] if i else None
            if prev is None or prev.state == "done":
                w.state, w.start_ns = "swapping", now
                res.events.append(_wave_event(now, i, "wave_start", ""))
            return
        if w.state == "swapping" and _swapped(plan, regions, w.regions, now):
            w.state, w.swapped_ns = "baking", now
            res.events.append(_wave_event(now, i, "wave_swapped", ""))
        elif (
            w.state == "baking"
            and now - w.swapped_ns >= round(plan.bake_days * NS_PER_DAY)
            and all(last_down[n] < now - window_ns for n in w.regions)
        ):
            _judge(plan, res, i, now)
        elif w.state == "rolling_back" and all(regions[n].settled("old") for n in w.regions):
            w.state, w.end_ns = "rolled_back", now
            res.events.append(_wave_event(now, i, "rollback_done", ""))
            _cancel_rest(res, i)
        if w.state != "done":
            return


def _swapped(plan: Plan, regions: dict[str, RegionState], names: tuple[str, ...], now: int):
    """Every rack of the regions is new, nothing in flight, and no rack is still scheduled
    to arrive there (a greenfield region's wave waits for its racks)."""
    if not all(regions[n].settled("new") for n in names):
        return False
    return not any(
        e.kind == "add" and e.at_ns > now and e.region in names for e in plan.rack_events
    )


def _judge(plan: Plan, res: TimelineResult, i: int, now: int) -> None:
    """Health gate of wave i over the last window_h: the new cohort's p99 vs SLO, its error
    rate and its per-rack throughput vs the old cohort, on steps where it served."""
    w = res.waves[i]
    g = plan.gates
    tl = res.timeline
    since = now - round(g.window_h * NS_PER_H)
    rows: list[int] = []
    for j in range(len(tl["time_ns"]) - 1, -1, -1):
        if tl["time_ns"][j] < since:
            break
        if tl["region"][j] in w.regions and tl["racks_new_serving"][j] > 0:
            rows.append(j)
    new, old = res.cohorts["new"], res.cohorts["old"]
    p99, err, source = _gate_metrics(res, rows, i)
    ratio = new.rps / old.rps if old.rps > 0 else math.inf
    checks = {
        "p99_vs_slo": (p99 / plan.slo_p99_s, p99 / plan.slo_p99_s <= g.p99_vs_slo_max),
        "error_rate": (err, err <= g.error_rate_max),
        "throughput_vs_baseline": (ratio, ratio >= g.throughput_vs_baseline_min),
    }
    passed = bool(rows) and all(ok for _, ok in checks.values())
    detail = ", ".join(f"{k}={v:.4g}{'' if ok else ' FAIL'}" for k, (v, ok) in checks.items())
    detail += f" ({source})"
    res.gate_results.append(
        {"wave": i, "time_ns": now, "passed": passed, "checks": checks, "metrics": source}
    )
    if passed:
        w.state, w.end_ns = "done", now
        res.events.append(_wave_event(now, i, "gate_pass", detail))
        return
    res.events.append(_wave_event(now, i, "gate_fail", detail))
    if plan.on_gate_failure == "pause":
        w.state, w.end_ns = "paused", now
        res.events.append(_wave_event(now, i, "pause", ""))
        _cancel_rest(res, i)
    else:
        w.state = "rolling_back"
        res.events.append(_wave_event(now, i, "rollback_start", ""))


def _gate_metrics(res: TimelineResult, rows: list[int], wave: int) -> tuple[float, float, str]:
    """New-cohort p99 and error rate for a gate: replayed at the window's highest-load row
    (demand / capacity) when a replay is configured, else the timeline's worst p99 and mean
    error rate over the window."""
    tl = res.timeline
    if res.gate_hook is not None and rows:
        j = max(rows, key=lambda r: tl["offered_rps"][r] / max(tl["capacity_rps"][r], 1e-300))
        row = res.gate_hook(res, j, wave)
        res.replays.append(row)
        return float(row["new_p99_s"]), float(row["new_error_rate"]), "replay"
    p99 = max((tl["new_p99_s"][j] for j in rows), default=math.nan)
    err = float(np.mean([tl["new_error_rate"][j] for j in rows])) if rows else math.nan
    return p99, err, "timeline"


def _cancel_rest(res: TimelineResult, i: int) -> None:
    """After a pause or a finished rollback no later wave starts."""
    for w in res.waves[i + 1 :]:
        w.state = "cancelled"


def _start_swaps(
    plan: Plan, res: TimelineResult, st: RegionState, wave: int | None, now: int
) -> None:
    """In the region's active wave, start swaps at the install rate within the drain budget."""
    if wave is None or res.waves[wave].state not in ("swapping", "rolling_back"):
        st.tokens = 0.0
        return
    src, dst = ("old", "new") if res.waves[wave].state == "swapping" else ("new", "old")
    per_step = plan.install_racks_per_day * plan.step_h / 24.0
    st.tokens = min(st.tokens + per_step, per_step + 1.0)
    room = math.floor(plan.drain_budget * st.in_service_base + 1e-9) - st.out_of_service()
    n = min(math.floor(st.tokens + 1e-9), max(room, 0), st.counts[(src, "serving")])
    st.tokens -= st.start_swaps(now, src, dst, n)


def _empty_timeline() -> dict[str, list[Any]]:
    cols = ["time_ns", "region", "wave", "rollout_state"]
    cols += [f"racks_{v}_{s}" for v in VERSIONS for s in STATES]
    cols += ["racks_total", "capacity_rps", "demand_rps", "headroom", "slo_ok", "power_w"]
    cols += ["new_p99_s", "new_error_rate", "degraded_rps", "parts_down_old", "parts_down_new"]
    cols += ["region_up", "offered_rps", "failover_in_rps", "failover_out_rps", "lost_rps"]
    return {c: [] for c in cols}


def _record(
    plan: Plan,
    res: TimelineResult,
    r: Region,
    st: RegionState,
    ps: PartState,
    wave: int | None,
    now: int,
) -> None:
    """One region's timeline row as if the region were up (failover columns: `_failover`)."""
    tl = res.timeline
    old, new = res.cohorts["old"], res.cohorts["new"]
    serving_old, serving_new = st.counts[("old", "serving")], st.counts[("new", "serving")]
    specs = plan.failures.parts if plan.failures else ()
    serving = {"old": serving_old, "new": serving_new}
    degraded = sum(serving[v] * res.cohorts[v].rps * ps.lost_fraction(specs, v, serving)
                   for v in VERSIONS)  # fmt: skip
    cap = serving_old * old.rps + serving_new * new.rps - degraded
    dem = float(demand_rps(r, now))
    tl["time_ns"].append(now)
    tl["region"].append(r.name)
    tl["wave"].append(-1 if wave is None else wave)
    tl["rollout_state"].append("none" if wave is None else res.waves[wave].state)
    for v in VERSIONS:
        for s in STATES:
            tl[f"racks_{v}_{s}"].append(st.counts[(v, s)])
    tl["racks_total"].append(st.total)
    tl["capacity_rps"].append(cap)
    tl["demand_rps"].append(dem)
    tl["headroom"].append(cap / dem - 1.0)
    tl["slo_ok"].append(dem <= cap)
    tl["power_w"].append(serving_old * old.power_w + serving_new * new.power_w)
    tl["new_p99_s"].append(new.p99_s if serving_new else math.nan)
    tl["new_error_rate"].append(new.error_rate if serving_new else math.nan)
    tl["degraded_rps"].append(degraded)
    for v in VERSIONS:
        tl[f"parts_down_{v}"].append(sum(ps.down(p, v, serving) for p in specs))


def _failover(tl: dict[str, list[Any]], up: list[bool], failover: str) -> None:
    """Complete the step's last len(up) rows: a down region has capacity 0 and its demand is
    failed over (outages.py); headroom and SLO status are judged on the demand offered
    to the region (its own, less what it sent or lost, plus what it received). A down
    region's headroom is NaN and its SLO holds when none of its demand was lost."""
    n = len(up)
    demand = tl["demand_rps"][-n:]
    tl["region_up"].extend(up)
    if all(up):  # the rows as recorded are right: nothing sent, received or lost
        tl["offered_rps"].extend(demand)
        for key in ("failover_in_rps", "failover_out_rps", "lost_rps"):
            tl[key].extend([0.0] * n)
        return
    cap = [c if u else 0.0 for c, u in zip(tl["capacity_rps"][-n:], up, strict=True)]
    fo = apply_failover(up, demand, cap, failover)
    for key, values in fo.items():
        tl[key].extend(values)
    for i in range(n):
        j = len(tl["time_ns"]) - n + i
        tl["capacity_rps"][j] = cap[i]
        offered = fo["offered_rps"][i]
        if up[i]:
            tl["headroom"][j] = cap[i] / offered - 1.0 if offered > 0 else math.inf
            tl["slo_ok"][j] = offered <= cap[i]
        else:
            tl["headroom"][j] = math.nan
            tl["slo_ok"][j] = fo["lost_rps"][i] <= 0.0


def _event(t: int, region: str, kind: str, version: str, n: int, cohorts: dict[str, Cohort]):
    label = cohorts[version].label if version in cohorts else ""
    return {"time_ns": t, "region": region, "wave": -1, "event": kind, "version": label,
            "racks": n, "detail": ""}  # fmt: skip


def _wave_event(t: int, wave: int, kind: str, detail: str) -> dict[str, Any]:
    return {"time_ns": t, "region": "", "wave": wave, "event": kind, "version": "",
            "racks": 0, "detail": detail}  # fmt: skip
