"""`mtia-cluster plan`: the cheapest fleet per region that meets the SLOs with an N-1 margin.

The search (docs/planning.md, "Search"):

1. **Prune with the cost model.** Every chip x settings candidate of a service gets a
   closed-form capacity per platform unit (`plan_candidates`) and, per region, the units
   its peak needs plus the spare (`plan_cost.units_needed`) and their yearly cost, energy
   and carbon (`plan_cost.region_cost`). Candidates are ranked by cost per region.
2. **Confirm by exact replay.** In each service's reference region (its largest peak) every
   candidate whose estimated cost is within `replay_within` x the cheapest (at least the
   `finalists` cheapest) is replayed at peak with `spare_units` units failed; the others are
   pruned. In the other regions the `finalists` cheapest are replayed, and the cheapest of
   each other chip within `replay_within`, then the next ones while none has passed.
   Replays run as Ray tasks through `distributed.ray_env.parallel` (the path `capacity`'s
   replays take), in process only without a Ray connection (the same function).
3. **Trim.** The cheapest passing fleet of each chip in each (service, region) is replayed
   with one unit fewer (the spare still failed) while it passes, at most `trim_steps` units:
   the estimate sizes fleets conservatively, the replays say how far they can shrink, and
   chips are compared at their confirmed sizes.
4. **Choose and explain.** Per (service, region) the cheapest candidate that passed wins;
   the fleet's totals are the sum of its winners; the Pareto front per service is over
   every replayed candidate (yearly cost over all regions, p99 over its SLO bound in the
   reference region, yearly energy); each winner gets a line saying why it wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.limits import Limits, limit_error
from mtia_cluster.cost.data import load_cost_data, region_grid
from mtia_cluster.cost.power import pool_rates
from mtia_cluster.errors import UserError
from mtia_cluster.planning.plan_candidates import Candidate, candidates
from mtia_cluster.planning.plan_cost import region_cost, units_needed, why
from mtia_cluster.planning.plan_file import Plan
from mtia_cluster.planning.plan_fleet import (
    ConfirmJob,
    confirm,
    fleet_document,
    fleet_scenario,
    mean_sizes,
    request_count,
)
from mtia_cluster.planning.plan_pareto import pareto_front

Progress = Callable[[int, int, str], None]
CHUNK = 8  # replays per progress update


def run_plan(
    plan: Plan, cat: Catalog, *, replays: bool = True, progress: Progress | None = None
) -> dict[str, Any]:
    """The plan's result (module doc) as plain data: what plan.json holds."""
    started = time.perf_counter()
    rows = _estimate_all(plan, cat)
    counted = 0
    if replays:
        counted = _confirm_all(plan, cat, rows, progress)
        counted += _trim(plan, cat, rows, progress, counted)
    winners = _winners(plan, rows, replays)
    return {
        "plan": plan.doc.name,
        "file": plan.file,
        "confirmed": replays,
        "units": {"cost": "USD per year", "energy": "kWh per year at the wall", "co2e": "t/year"},
        "search": plan.doc.search.model_dump(),
        "candidates": [_public(r) for r in rows],
        "winners": winners,
        "totals": _totals(winners),
        "pareto": _pareto(plan, rows),
        "replays": counted,
        "search_s": time.perf_counter() - started,
    }


def _estimate_all(plan: Plan, cat: Catalog) -> list[dict[str, Any]]:
    """One row per (candidate, region of its service's demand): estimate and cost."""
    sizes = mean_sizes(plan.doc.seed)
    data = load_cost_data()
    grids = {r.name: region_grid(data, r.name, r.energy, plan.file) for r in plan.doc.regions}
    opts, limit = plan.doc.search, Limits.from_env().accelerators
    rows = []
    for service in plan.doc.services:
        for c in candidates(cat, plan, service, sizes):
            rates = _rates(cat, plan, data, c)
            for region, demand in service.demand.items():
                row = {"candidate": c, "region": region, "label": c.label, "passed": None}
                if rates is not None:
                    units = units_needed(demand.peak_rps, c.rps_per_unit, opts.spare_units)
                    if units * c.unit_accelerators > limit:  # a fleet no scenario may hold
                        row["over_limit"] = units * c.unit_accelerators
                        rows.append(row)
                        continue
                    # what a smaller fleet's cost needs (`_trim`); not part of the result
                    row.update(_rates=rates, _grid=grids[region], _demand=demand, trimmed=0)
                    row.update(cost=_cost(plan, row, units), rps_per_unit=c.rps_per_unit)
                rows.append(row)
    _check_sizes(plan, rows, limit)
    return rows


def _check_sizes(plan: Plan, rows: list[dict[str, Any]], limit: int) -> None:
    """A (service, region) whose every estimated candidate needs more accelerators than the
    `accelerators` limit is one line naming its peak_rps (a typo of a few zeros), before
    any replay; candidates over the limit where others fit are left out of the ranking."""
    for i, service in enumerate(plan.doc.services):
        for region in service.demand:
            mine = [
                r for r in rows if r["candidate"].service == service.name and r["region"] == region
            ]
            over = [r["over_limit"] for r in mine if "over_limit" in r]
            if over and not any("cost" in r for r in mine):
                raise limit_error(
                    "accelerators needed at peak by the smallest candidate fleet",
                    min(over),
                    "accelerators",
                    limit,
                    plan.file,
                    f"services[{i}].demand.{region}.peak_rps",
                )


def _cost(plan: Plan, row: dict[str, Any], units: int) -> dict[str, Any]:
    """The yearly figures of `units` units of the row's candidate in its region."""
    c, target = row["candidate"], plan.doc.search.target_utilization
    return region_cost(c, row["_rates"], row["_grid"], row["_demand"], units, target).as_dict()


def _rates(cat: Catalog, plan: Plan, data: Any, c: Candidate) -> Any:
    """Per-accelerator rates of `c`'s pool; None (and `c.infeasible` set) when the
    scenario refuses the pool."""
    if c.infeasible is not None:
        return None
    region = next(r for s in plan.doc.services if s.name == c.service for r in s.demand)
    try:
        doc = fleet_document(cat, plan, {(c.service, region): (c, 1)}, "probe")
        spec = fleet_scenario(cat, doc).regions[0].pools[0]
    except UserError as exc:
        c.infeasible = str(exc)
        return None
    return pool_rates(cat, data, spec)


def _feasible(rows: list[dict[str, Any]], service: str, region: str) -> list[dict[str, Any]]:
    """Rows of (service, region) with an estimate, cheapest first."""
    mine = [r for r in rows if r["candidate"].service == service and r["region"] == region]
    return sorted((r for r in mine if "cost" in r), key=lambda r: r["cost"]["cost_usd_per_year"])


def _confirm_all(
    plan: Plan, cat: Catalog, rows: list[dict[str, Any]], progress: Progress | None
) -> int:
    """Replay the reference regions' candidates and each region's finalists (module doc);
    fill each row's `passed` and `replay`. Returns the number of replays."""
    k = plan.doc.search.finalists
    todo: list[dict[str, Any]] = []
    for s in plan.doc.services:
        ref = reference_region(plan, s.name)
        for region in s.demand:
            ranked = _feasible(rows, s.name, region)
            near = _within(ranked, plan.doc.search.replay_within, k)
            if region == ref:
                todo += near
            else:  # the finalists, and each other chip's cheapest if near (the "why" compares)
                top = {id(r) for r in ranked[:k]}
                todo += ranked[:k] + [r for r in _per_chip(near) if id(r) not in top]
    done = _replay(plan, cat, todo, progress, 0)
    while True:  # regions where no finalist passed: the next finalists
        more = []
        for s in plan.doc.services:
            for region in s.demand:
                ranked = _feasible(rows, s.name, region)
                if not any(r["passed"] for r in ranked):
                    more += [r for r in ranked if r["passed"] is None][:k]
        if not more:
            return done
        done += _replay(plan, cat, more, progress, done)


def _trim(
    plan: Plan, cat: Catalog, rows: list[dict[str, Any]], progress: Progress | None, before: int
) -> int:
    """Shrink the cheapest passing fleet of each chip in each (service, region) one unit at
    a time while the smaller fleet, spare units failed, still passes (at most `trim_steps`
    units each): the chips are then compared at their confirmed sizes. Returns the number
    of replays."""
    opts = plan.doc.search
    active = [
        r
        for s in plan.doc.services
        for region in s.demand
        for r in _per_chip([x for x in _feasible(rows, s.name, region) if x["passed"]])
    ]
    done = 0
    for _ in range(opts.trim_steps):
        todo = [r for r in active if r["cost"]["units"] - 1 > opts.spare_units]
        if not todo:
            break
        smaller = [r | {"cost": _cost(plan, r, r["cost"]["units"] - 1)} for r in todo]
        done += _replay(plan, cat, smaller, progress, before + done)
        active = []
        for row, small in zip(todo, smaller, strict=True):
            if small["passed"]:
                row.update(cost=small["cost"], replay=small["replay"], trimmed=row["trimmed"] + 1)
                active.append(row)
    return done


def _per_chip(ranked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first row of each chip in `ranked` (cheapest first)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in ranked:
        seen.setdefault(r["candidate"].chip, r)
    return list(seen.values())


def _within(ranked: list[dict[str, Any]], factor: float, k: int) -> list[dict[str, Any]]:
    """The rows costing at most `factor` x the cheapest, and at least the `k` cheapest."""
    if not ranked:
        return []
    top = ranked[0]["cost"]["cost_usd_per_year"] * factor
    return [r for i, r in enumerate(ranked) if i < k or r["cost"]["cost_usd_per_year"] <= top]


def reference_region(plan: Plan, service: str) -> str:
    """The region of the service's largest peak (ties: the first listed)."""
    s = next(x for x in plan.doc.services if x.name == service)
    return max(s.demand, key=lambda r: s.demand[r].peak_rps)


def _replay(
    plan: Plan, cat: Catalog, todo: list[dict[str, Any]], progress: Progress | None, before: int
) -> int:
    """Run the confirming replays of `todo` in chunks (Ray tasks when Ray is up)."""
    from mtia_cluster.distributed.ray_env import parallel

    tasks = parallel(confirm, num_cpus=1)
    for i in range(0, len(todo), CHUNK):
        chunk = todo[i : i + CHUNK]
        jobs = [_job(plan, cat, r) for r in chunk]
        results = tasks([(j,) for j in jobs]) if tasks is not None else [confirm(j) for j in jobs]
        for row, res in zip(chunk, results, strict=True):
            row["passed"], row["replay"] = bool(res["passed"]), res
        if progress is not None:
            progress(before + i + len(chunk), before + len(todo), "confirming replays")
    return len(todo)


def _job(plan: Plan, cat: Catalog, row: dict[str, Any]) -> ConfirmJob:
    c: Candidate = row["candidate"]
    units = row["cost"]["units"]
    doc = fleet_document(cat, plan, {(c.service, row["region"]): (c, units)}, c.label)
    names = [s.name for s in plan.doc.services]
    regions = [r.name for r in plan.doc.regions]
    rate = row["cost"]["peak_rps"]
    return ConfirmJob(
        scenario=fleet_scenario(cat, doc),
        service=c.service,
        region=row["region"],
        slo=plan.slos[c.service],
        rate_rps=rate,
        requests=request_count(plan, rate),
        seed=plan.doc.seed,
        key=(names.index(c.service), regions.index(row["region"])),
    )


def _winners(plan: Plan, rows: list[dict[str, Any]], replays: bool) -> list[dict[str, Any]]:
    """Per (service, region): the cheapest row that passed (or, without replays, the
    cheapest estimate), with the line saying why it beats the next cheapest."""
    out = []
    for r in plan.doc.regions:
        for s in plan.doc.services:
            if r.name not in s.demand:
                continue
            ranked = _feasible(rows, s.name, r.name)
            ok = [x for x in ranked if x["passed"]] if replays else ranked
            row = None
            if ok:
                row = _public(ok[0]) | {"why": why(ok[0], _runner_up(ok[0], ok, ranked))}
            out.append({"service": s.name, "region": r.name, "winner": row})
    return out


def _runner_up(
    best: dict[str, Any], ok: list[dict[str, Any]], ranked: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """What `best` is compared with: the cheapest passing candidate of another chip, else
    the cheapest estimate of another chip, else the next passing one of different cost,
    else the next cheapest estimate."""
    chip = best["candidate"].chip
    cost = best["cost"]["cost_usd_per_year"]
    for pick in (
        [x for x in ok if x["candidate"].chip != chip],
        [x for x in ranked if x["candidate"].chip != chip],
        [x for x in ok if x["cost"]["cost_usd_per_year"] > cost],
        [x for x in ranked if x is not best],
    ):
        if pick:
            return pick[0]
    return None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON data (the candidate's fields flattened)."""
    c: Candidate = row["candidate"]
    out = {
        "service": c.service,
        "region": row["region"],
        "label": c.label,
        "chip": c.chip,
        "platform": c.platform,
        "settings": dict(c.settings),
        "unit_hosts": c.unit_hosts,
        "unit_accelerators": c.unit_accelerators,
        "rps_per_unit": c.rps_per_unit,
        "bound": c.bound,
        "infeasible": c.infeasible or _over(row),
        "passed": row["passed"],
    }
    for key in ("cost", "replay", "trimmed"):
        if key in row:
            out[key] = row[key]
    return out


def _over(row: dict[str, Any]) -> str | None:
    """Why a row has no estimate in its region: its fleet would exceed the limit."""
    if "over_limit" not in row:
        return None
    return f"needs {row['over_limit']:,} accelerators at this peak (limit accelerators)"


def _totals(winners: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet's yearly totals and per region: sums of its winners' figures."""
    keys = (
        "capex_usd_per_year",
        "energy_usd_per_year",
        "cost_usd_per_year",
        "facility_energy_kwh_per_year",
        "co2e_t_per_year",
        "accelerators",
        "units",
    )
    chosen = [w for w in winners if w["winner"] is not None]
    by_region: dict[str, dict[str, float]] = {}
    for w in chosen:
        acc = by_region.setdefault(w["region"], dict.fromkeys(keys, 0.0))
        for k in keys:
            acc[k] += w["winner"]["cost"][k]
    fleet = {k: sum(r[k] for r in by_region.values()) for k in keys}
    missing = [f"{w['service']}@{w['region']}" for w in winners if w["winner"] is None]
    return {"fleet": fleet, "regions": by_region, "missing": missing}


def _pareto(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per service: the candidates no other beats on yearly cost (all regions), p99 over
    its bound (reference region replay; NaN without one) and yearly energy."""
    out = {}
    for s in plan.doc.services:
        ref = reference_region(plan, s.name)
        points, labels = [], []
        for r in _feasible(rows, s.name, ref):
            same = [x for x in rows if x["candidate"] is r["candidate"] and "cost" in x]
            cost = sum(x["cost"]["cost_usd_per_year"] for x in same)
            kwh = sum(x["cost"]["facility_energy_kwh_per_year"] for x in same)
            ratio = r.get("replay", {}).get("slo_ratio", float("nan"))
            points.append((cost, ratio, kwh))
            labels.append(r["label"])
        front = pareto_front(points) if any(p[1] == p[1] for p in points) else []
        if not front:  # nothing replayed: cost and energy only
            front = pareto_front([(p[0], p[2]) for p in points])
        out[s.name] = _front_entries(front, points, labels)
    return out


def _front_entries(
    front: list[int], points: list[tuple[float, float, float]], labels: list[str]
) -> list[dict[str, Any]]:
    """One entry per distinct point of the front; candidates with exactly the same figures
    as an earlier one are listed under it (`identical`), not as rows of their own."""
    entries: dict[tuple[float, float, float], dict[str, Any]] = {}
    for i in front:
        key = (points[i][0], points[i][1], points[i][2])
        if key in entries:
            entries[key]["identical"].append(labels[i])
            continue
        entries[key] = {
            "label": labels[i],
            "cost_usd_per_year": points[i][0],
            "p99_over_slo": points[i][1],
            "facility_energy_kwh_per_year": points[i][2],
            "identical": [],
        }
    return list(entries.values())
