"""Run a rollout plan end to end: per-rack capacities, the timeline, outputs and summary.

Outputs (one directory, written atomically): `timeline/part-0.parquet` (region x time),
`events/part-0.parquet` (every drain, install, burn-in, serve, failure, repair, wave and gate
event), `replays/part-0.parquet` (one row per replayed moment; empty without replays) and
`summary.json`. Column meanings are in docs/rollout.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import mtia_cluster
from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.cost.rollout import rollout_costs
from mtia_cluster.output import ROLLOUT_DIR, claim_output, contents_of, staged
from mtia_cluster.rollout.drill import DrillResult
from mtia_cluster.rollout.moment_replay import MomentReplay
from mtia_cluster.rollout.moments import MomentReplayer, replay_moments
from mtia_cluster.rollout.outages import outage_summary
from mtia_cluster.rollout.plan import Plan
from mtia_cluster.rollout.rack_capacity import CacheKey, RackCapacity, rack_capacity
from mtia_cluster.rollout.slice import engine_cohorts
from mtia_cluster.rollout.timeline import Cohort, TimelineResult, run_timeline
from mtia_cluster.units import NS_PER_DAY

REFERENCE_NOTE = "Meta: MTIA 2i from first silicon to production in 16 regions in < 9 months"


def cohorts_for(
    plan: Plan, cat: Catalog, mode: str, cache: dict[CacheKey, RackCapacity] | None = None
) -> dict[str, Cohort]:
    """Per-rack capacity, power and health of the old and the new version."""
    cache = {} if cache is None else cache
    t = plan.target

    def rack(chip: str) -> RackCapacity:
        units = plan.units_per_rack.get(chip, 1)
        return rack_capacity(cat, plan, chip, mode, units, cache)

    old = rack(t.from_generation)
    base = plan.baseline_p99_s
    if t.kind == "generation":
        new = rack(t.to_generation)
        return {
            "old": _cohort(t.from_generation, old, base),
            "new": _cohort(t.to_generation, new, base),
        }
    scaled = replace(
        old,
        requests_per_s=old.requests_per_s * t.perf_multiplier,
        lowest_failing_rps=old.lowest_failing_rps * t.perf_multiplier,
        detail=f"current version x perf_multiplier {t.perf_multiplier:g} ({old.detail})",
    )
    return {
        "old": _cohort(f"{plan.model}@current", old, base),
        "new": replace(
            _cohort(f"{plan.model}@new", scaled, base * t.latency_multiplier),
            error_rate=t.error_rate,
        ),
    }


def _cohort(label: str, rack: RackCapacity, p99_s: float) -> Cohort:
    """A timeline cohort from one rack's capacity (the search's bracket kept when finite)."""
    upper = rack.lowest_failing_rps
    return Cohort(
        label,
        rack.requests_per_s,
        rack.power_w,
        p99_s,
        0.0,
        rack.source,
        rps_upper=float(upper) if math.isfinite(upper) else None,
        capacity_detail=rack.detail,
    )


_ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}


def _schema(cls: type, prefix: str = "") -> list[tuple[str, pa.DataType]]:
    """Columns of a result dataclass's `to_row()`, typed from its field annotations."""
    return [(prefix + f.name, _ARROW[str(f.type).split(" ")[0]]) for f in fields(cls)]


# one row per replayed moment; the N-1 drill's columns are null without replay.drill
REPLAY_SCHEMA = pa.schema(_schema(MomentReplay) + _schema(DrillResult, "drill_"))
DRILL_SUMMARY = ("drill_racks_old", "drill_racks_new", "drill_hosts_failed_old",
                 "drill_hosts_failed_new", "drill_p99_before_s", "drill_p99_after_s",
                 "drill_error_rate_after", "drill_requests_retried", "drill_requests_failed",
                 "drill_retried_region_est", "drill_capacity_after_rps", "drill_timeline_ok",
                 "drill_n1_ok", "drill_verdict", "drill_every_request_once")  # fmt: skip


def run_rollout(
    plan: Plan,
    fast: bool = False,
    catalog: Catalog | None = None,
    replay: bool | None = None,
    cache: dict[CacheKey, RackCapacity] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[TimelineResult, dict[str, Any]]:
    """Simulate `plan` (capacity from the cost model when `fast` or the plan says so).

    `progress(steps done, steps, note)`: cohort capacity, the timeline, each replayed moment.

    Exact replays at the moments that matter (rollout/moments.py) run unless `fast`, `replay`
    is False or the plan's `replay.enabled` is false; with them the gates are judged on the
    replayed new-cohort p99 and error rate, without them on the timeline's analytic figures.
    """
    step = progress or (lambda done, total, note: None)
    cat = catalog or load_catalog()
    mode = "fast" if fast else plan.capacity_mode
    step(0, 3, "rack capacity of each cohort")
    cohorts = cohorts_for(plan, cat, mode, cache)
    on = (not fast and plan.replay.enabled) if replay is None else replay
    step(1, 3, "timeline" + (" and gate replays" if on else ""))
    if on:
        replayer = MomentReplayer(plan, cat, engine_cohorts(plan, cat, cohorts))
        res = run_timeline(plan, cohorts, replayer.gate_hook())
        res.replays = replay_moments(
            replayer, res, lambda i, n: step(2 + i, 2 + n, f"replaying moment {i + 1} of {n}")
        )
    else:
        res = run_timeline(plan, cohorts)
        step(2, 2, "timeline done")
    sources = sorted({c.source for c in cohorts.values()})
    summary = rollout_summary(plan, res, "+".join(sources))
    summary.update(rollout_costs(plan, res.timeline, cat))  # cost and carbon (#19)
    summary["gate_metrics"] = "replay" if on else "timeline"
    summary["replays"] = [_replay_summary(r) for r in res.replays]
    summary["replay_disagreements"] = sum(not r["agrees"] for r in res.replays)
    summary["drill"] = _drill_summary(plan, res.replays) if on else None
    return res, summary


def _drill_summary(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The N-1 drill's spec and how many replayed moments kept the SLO with the racks out."""
    spec = plan.replay.drill
    if spec is None:
        return None
    done = [r for r in rows if "drill_n1_ok" in r]
    return {
        "racks": spec.racks,
        "at_fraction": spec.at_fraction,
        "on_failure": spec.on_failure,
        "moments": len(done),
        "n1_ok": sum(bool(r["drill_n1_ok"]) for r in done),
        "n1_fail": sum(not r["drill_n1_ok"] for r in done),
        "over_capacity_left": sum(not r["drill_timeline_ok"] for r in done),
        "requests_lost": sum(not r.get("drill_every_request_once", True) for r in done),
    }


def _replay_summary(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("kind", "wave", "region", "day", "racks_old_serving", "racks_new_serving",
            "demand_rps", "capacity_rps", "replayed_throughput_rps", "p99_s", "new_p99_s",
            "error_rate", "new_error_rate", "timeline_slo_ok", "replay_slo_ok", "verdict",
            "agrees", "slice_hosts_old", "slice_hosts_new", "region_hosts_old",
            "region_hosts_new", "span_s", "requests")  # fmt: skip
    return {k: r.get(k) for k in (*keys, *DRILL_SUMMARY)}


def rollout_summary(plan: Plan, res: TimelineResult, mode: str) -> dict[str, Any]:
    """The summary.json document (see docs/rollout.md)."""
    tl = res.timeline
    t_ns = np.asarray(tl["time_ns"], dtype=np.int64)
    region = np.asarray(tl["region"])
    head = np.asarray(tl["headroom"], dtype=np.float64)
    head = np.where(np.isnan(head), np.inf, head)  # a region that is down has no headroom
    ok = np.asarray(tl["slo_ok"], dtype=bool)
    cap = np.asarray(tl["capacity_rps"], dtype=np.float64)
    power = np.asarray(tl["power_w"], dtype=np.float64)
    step_min = plan.step_h * 60.0
    regions: list[dict[str, Any]] = []
    for r in plan.regions:
        m = region == r.name
        j = int(np.argmin(np.where(m, head, np.inf)))
        regions.append(
            {
                "region": r.name,
                "min_headroom": float(head[j]),
                "min_headroom_day": float(t_ns[j] / NS_PER_DAY),
                "slo_violation_minutes": float((~ok[m]).sum() * step_min),
            }
        )
    first, last = t_ns == t_ns.min(), t_ns == t_ns.max()
    done = all(w.state == "done" for w in res.waves)
    days = [w.swapped_ns / NS_PER_DAY for w in res.waves if w.swapped_ns >= 0]
    return {
        "plan": plan.name,
        "capacity_source": mode,
        "cohorts": {k: vars(c) for k, c in res.cohorts.items()},
        "completed": done,
        "time_to_full_rollout_days": max(days) if done and days else None,
        "time_to_rollout_done_days": res.waves[-1].end_ns / NS_PER_DAY if done else None,
        "final_states": [w.state for w in res.waves],
        "waves": [_wave(w) for w in res.waves],
        "rollbacks": sum(w.state in ("rolling_back", "rolled_back") for w in res.waves),
        "racks_added": sum(e["racks"] for e in res.events if e["event"] == "rack_add"),
        "racks_removed": sum(e["racks"] for e in res.events if e["event"] == "rack_gone"),
        "rack_failures": sum(e["racks"] for e in res.events if e["event"] == "failure"),
        "part_failures": {
            p: sum(e["racks"] for e in res.events if e["event"] == f"{p}_failure")
            for p in ("host", "accelerator")
        },
        "degraded_rps_max": max(res.timeline["degraded_rps"], default=0.0),
        "pauses": sum(w.state == "paused" for w in res.waves),
        "slo_violation_minutes": float((~ok).sum() * step_min),
        "min_headroom": min(float(x["min_headroom"]) for x in regions),
        "regions": regions,
        "energy_mwh": float(power.sum() * plan.step_h / 1e6),
        "perf_per_w_before": _ratio(cap[first].sum(), power[first].sum()),
        "perf_per_w_after": _ratio(cap[last].sum(), power[last].sum()),
        "outages": outage_summary(tl, res.events, plan.step_h, plan.failover),
        "horizon_days": plan.horizon_days,
        "step_h": plan.step_h,
    }


def _wave(w: Any) -> dict[str, Any]:
    def day(ns: int) -> float | None:
        return ns / NS_PER_DAY if ns >= 0 else None

    return {
        "regions": list(w.regions),
        "state": w.state,
        "start_day": day(w.start_ns),
        "swapped_day": day(w.swapped_ns),
        "end_day": day(w.end_ns),
    }


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else math.nan


def write_outputs(
    out_dir: str | Path, res: TimelineResult, summary: dict[str, Any], *, overwrite: bool = False
) -> Path:
    """Write timeline/, events/, replays/, summary.json and manifest.json into `out_dir`,
    atomically. Only an absent or empty directory, or (with `overwrite`) an earlier rollout
    or results directory of the tool, is replaced (mtia_cluster.output)."""
    out = Path(out_dir)
    with staged(claim_output(out, ROLLOUT_DIR, overwrite=overwrite)) as tmp:
        (tmp / "timeline").mkdir()
        (tmp / "events").mkdir()
        pq.write_table(pa.table(res.timeline), tmp / "timeline" / "part-0.parquet")
        cols = ["time_ns", "region", "wave", "event", "version", "racks", "detail"]
        events = {c: [e[c] for e in res.events] for c in cols}
        schema = pa.schema(
            [
                ("time_ns", pa.int64()),
                ("region", pa.string()),
                ("wave", pa.int64()),
                ("event", pa.string()),
                ("version", pa.string()),
                ("racks", pa.int64()),
                ("detail", pa.string()),
            ]
        )
        pq.write_table(pa.table(events, schema=schema), tmp / "events" / "part-0.parquet")
        (tmp / "replays").mkdir()
        rows = {f.name: [r.get(f.name) for r in res.replays] for f in REPLAY_SCHEMA}
        replays = pa.table(rows, schema=REPLAY_SCHEMA)
        pq.write_table(replays, tmp / "replays" / "part-0.parquet")
        text = json.dumps(_json_safe(summary), indent=2)
        (tmp / "summary.json").write_text(text + "\n", encoding="utf-8")
        manifest = {
            "format": ROLLOUT_DIR.format,
            "format_version": "1",
            "command": "rollout",
            "plan": summary.get("plan"),
            "package_version": mtia_cluster.__version__,
            "contents": contents_of(tmp),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):
        return _json_safe(x.item())
    return x
