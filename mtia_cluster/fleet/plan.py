"""Rollout plans (`configs/rollouts/*.yaml`): parsed and validated into frozen dataclasses.

A plan names the fleet (regions and their racks by generation), the service (model, SLO,
baseline p99), demand per region (peak, diurnal peak:trough ratio, timezone, weekly growth),
the target (a chip generation to swap racks to, or a model version with a performance
multiplier and an optional injected regression), the waves, the install rate, the per-rack
swap time, the drain budget, bake time, health gates and what a failed gate does. Every
problem is one UserError naming file, field and value: the shape is checked first against
`config.rollout_plan.RolloutPlanFile` (unknown keys refused), then read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.config import Fields, apply_overrides, load_yaml
from mtia_cluster.config.rollout_plan import RolloutPlanFile
from mtia_cluster.config.schema import validate
from mtia_cluster.errors import UserError
from mtia_cluster.fleet.drill import DrillSpec, parse_drill
from mtia_cluster.fleet.events import RackEvent, parse_events
from mtia_cluster.fleet.llm_capacity import DEFAULT_SEARCH, CapacitySearch, parse_llm_slo
from mtia_cluster.fleet.outages import (
    FAILOVER,
    Outage,
    RegionFailureSpec,
    parse_outages,
    parse_region_failures,
)
from mtia_cluster.fleet.parts import PartSpec, parse_parts
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.workloads import RRModel


@dataclass(frozen=True)
class Demand:
    peak_rps: float  # requests/s at the daily peak, week 0
    peak_to_trough: float  # daily peak / daily trough (>= 1)
    tz_offset_h: float  # local time = UTC + offset
    weekly_growth_pct: float  # compound growth per week
    peak_hour_local: float = 20.0


@dataclass(frozen=True)
class Region:
    name: str
    racks: dict[str, int]  # generation (chip) -> racks
    demand: Demand


@dataclass(frozen=True)
class Target:
    kind: str  # generation | model_version
    from_generation: str  # the racks that are swapped
    to_generation: str  # == from_generation for a model-version rollout
    perf_multiplier: float = 1.0  # new model version's throughput vs the old one
    latency_multiplier: float = 1.0  # injected p99 regression of the new version
    error_rate: float = 0.0  # injected error rate of the new version


@dataclass(frozen=True)
class Gates:
    p99_vs_slo_max: float  # new cohort p99 / SLO p99 must be <= this
    error_rate_max: float
    throughput_vs_baseline_min: float  # new cohort per-rack throughput / old cohort's
    window_h: float


@dataclass(frozen=True)
class Failures:
    mtbf_h: float | None  # per rack (None: no whole-rack failures, only parts)
    mttr_h: float  # mean repair time of a rack
    seed: int
    correlated_prob_per_day: float = 0.0  # per region: chance of a correlated event per day
    correlated_racks: int = 0  # serving racks that fail together in such an event
    parts: tuple[PartSpec, ...] = ()  # host / accelerator failures (fleet/parts.py)
    region: RegionFailureSpec | None = None  # drawn whole-region outages (fleet/outages.py)


@dataclass(frozen=True)
class ReplaySpec:
    """Exact replays at the moments that matter (docs/rollout.md, "Replays")."""

    enabled: bool = True
    span_s: float = 2.0  # simulated seconds of Poisson arrivals per moment (at least)
    max_requests: int = 400_000  # per replay; a larger region is replayed as a slice
    max_hosts: int = 4  # hosts in a slice (at least one per serving version)
    seed: int = 0
    drill: DrillSpec | None = None  # N-1 failure drill in every replayed moment (fleet/drill.py)


@dataclass(frozen=True)
class OptimizeSpec:
    """What `--optimize` may change and the headroom it must keep."""

    headroom_margin: float  # capacity must stay >= demand x (1 + margin) at every step
    install_rates: tuple[float, ...]  # candidate install_racks_per_day
    wave_sizes: tuple[int, ...]  # candidate regions per wave after a one-region first wave


@dataclass(frozen=True)
class Plan:
    name: str
    file: str
    model: str
    slo_p99_s: float
    baseline_p99_s: float  # observed p99 of the old version (the gate's latency base)
    capacity_mode: str  # fast | replay
    regions: tuple[Region, ...]
    units_per_rack: dict[str, int]  # platform units per rack, by generation (default 1)
    target: Target
    waves: tuple[tuple[str, ...], ...]
    install_racks_per_day: float  # per region
    drain_h: float
    install_h: float
    burnin_h: float
    drain_budget: float  # max fraction of a region's racks out of service at once
    bake_days: float
    gates: Gates
    on_gate_failure: str  # pause | rollback
    step_h: float
    horizon_days: float
    max_steps: int
    failures: Failures | None = None
    optimize: OptimizeSpec | None = None
    replay: ReplaySpec = ReplaySpec()
    events: tuple[RackEvent, ...] = ()  # racks added / removed at given days (fleet/events.py)
    outages: tuple[Outage, ...] = ()  # scheduled whole-region outages (fleet/outages.py)
    failover: str = "proportional"  # a down region's demand: none (lost) | proportional
    ttft_p99_s: float | None = None  # LLM: p99 TTFT bound of the capacity search (optional)
    tpot_p99_s: float | None = None  # LLM: p99 TPOT bound of the capacity search (optional)
    capacity_search: CapacitySearch = DEFAULT_SEARCH  # LLM replay capacity search config

    @property
    def swap_h(self) -> float:
        return self.drain_h + self.install_h + self.burnin_h

    @property
    def slo(self) -> ServiceSLO:
        """The service's SLO as the one SLO type (p99 end to end; TTFT/TPOT for LLM plans):
        what capacity searches, moment replays and drills judge with."""
        ttft, tpot = self.ttft_p99_s, self.tpot_p99_s
        return ServiceSLO(
            kind="rr" if ttft is None and tpot is None else "llm",
            latency_ns=round(self.slo_p99_s * 1e9),
            ttft_ns=None if ttft is None else round(ttft * 1e9),
            tpot_ns=None if tpot is None else round(tpot * 1e9),
        )


def load_plan(
    path: str | Path, overrides: list[str] | None = None, catalog: Catalog | None = None
) -> Plan:
    """Read and validate the plan at `path` (with `--set` overrides applied)."""
    data = load_yaml(path)
    if overrides:
        data = apply_overrides(data, list(overrides), RolloutPlanFile)
    return parse_plan(data, path, catalog or load_catalog())


def parse_plan(data: dict[str, Any], file: str | Path | None, cat: Catalog) -> Plan:
    """Validate a plan mapping; raises UserError naming file/field/value on any problem."""
    validate(RolloutPlanFile, data, file)  # shape, types, ranges; cross-references below
    f = Fields(data, file)
    svc = f.sub("service")
    model = svc.str("model")
    if model not in cat.models:
        raise svc.error("model", "unknown model", model)
    slo_p99_s = svc.number("slo_p99_ms", positive=True) / 1e3
    base_p99_s = svc.number("baseline_p99_ms", slo_p99_s * 1e3 * 0.5, positive=True) / 1e3
    mode = svc.str("capacity", "replay", choices=("fast", "replay"))
    llm = not isinstance(cat.model(model), RRModel)
    ttft_p99_s, tpot_p99_s, search = parse_llm_slo(svc, slo_p99_s, llm)
    fleet = f.sub("fleet")
    regions = _regions(fleet, cat)
    units = _units(fleet, cat)
    target = _target(f.sub("target"), cat)
    waves = _waves(f, {r.name for r in regions})
    roll = f.sub("rollout")
    swap = roll.sub("swap_time_h")
    gates_f = roll.sub("gates", {})
    timeline = f.sub("timeline", {})
    plan = Plan(
        name=f.str("name"),
        file=str(file),
        model=model,
        slo_p99_s=slo_p99_s,
        baseline_p99_s=base_p99_s,
        capacity_mode=mode,
        regions=regions,
        units_per_rack=units,
        target=target,
        waves=waves,
        install_racks_per_day=roll.number("install_racks_per_day", positive=True),
        drain_h=swap.number("drain", 0.0),
        install_h=swap.number("install"),
        burnin_h=swap.number("burnin", 0.0),
        drain_budget=roll.number("drain_budget", max_value=1.0),
        bake_days=roll.number("bake_days", 0.0),
        gates=Gates(
            p99_vs_slo_max=gates_f.number("p99_vs_slo_max", 1.0, positive=True),
            error_rate_max=gates_f.number("error_rate_max", 0.001, max_value=1.0),
            throughput_vs_baseline_min=gates_f.number("throughput_vs_baseline_min", 0.9),
            window_h=gates_f.number("window_h", 24.0, positive=True),
        ),
        on_gate_failure=roll.str("on_gate_failure", "rollback", choices=("pause", "rollback")),
        step_h=timeline.number("step_h", 1.0, positive=True),
        horizon_days=timeline.number("horizon_days", 365.0, positive=True),
        max_steps=timeline.int("max_steps", 20000, positive=True),
        failures=_failures(f.sub("failures"), cat, target, units) if f.has("failures") else None,
        optimize=_optimize(f.sub("optimize", {}), roll.number("install_racks_per_day")),
        replay=_replay(f.sub("replay", {}), not isinstance(cat.model(model), RRModel)),
        events=parse_events(
            f,
            {r.name for r in regions},
            {target.from_generation, target.to_generation},
            timeline.number("horizon_days", 365.0, positive=True),
        ),
        outages=parse_outages(
            f, {r.name for r in regions}, timeline.number("horizon_days", 365.0, positive=True)
        ),
        failover=f.str("failover", "proportional", choices=FAILOVER),
        ttft_p99_s=ttft_p99_s,
        tpot_p99_s=tpot_p99_s,
        capacity_search=search,
    )
    _check_work(plan, roll, timeline)
    return plan


def _regions(fleet: Fields, cat: Catalog) -> tuple[Region, ...]:
    items = fleet.list("regions")
    if not items:
        raise fleet.error("regions", "needs at least one region", items)
    out: list[Region] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        r = Fields(item, fleet.file, fleet.path(f"regions[{i}]"))
        name = r.str("name")
        if name in seen:
            raise r.error("name", "duplicate region", name)
        seen.add(name)
        racks_f = r.sub("racks")
        racks: dict[str, int] = {}
        for gen in racks_f.data:
            if str(gen) not in cat.chips:
                raise racks_f.error(str(gen), "unknown generation (chip)", gen)
            racks[str(gen)] = racks_f.int(str(gen))
        d = r.sub("demand")
        demand = Demand(
            peak_rps=d.number("peak_rps", positive=True),
            peak_to_trough=d.number("peak_to_trough", 1.0, min_value=1.0),
            tz_offset_h=d.number("tz_offset_h", 0.0, min_value=-12.0, max_value=14.0),
            weekly_growth_pct=d.number("weekly_growth_pct", 0.0, min_value=-50.0),
            peak_hour_local=d.number("peak_hour_local", 20.0, max_value=24.0),
        )
        out.append(Region(name=name, racks=racks, demand=demand))
    return tuple(out)


def _units(fleet: Fields, cat: Catalog) -> dict[str, int]:
    if not fleet.has("units_per_rack"):
        return {}
    u = fleet.sub("units_per_rack")
    out: dict[str, int] = {}
    for gen in u.data:
        if str(gen) not in cat.chips:
            raise u.error(str(gen), "unknown generation (chip)", gen)
        out[str(gen)] = u.int(str(gen), positive=True)
    return out


def _target(t: Fields, cat: Catalog) -> Target:
    kind = t.str("kind", choices=("generation", "model_version"))
    src = t.str("from_generation")
    if src not in cat.chips:
        raise t.error("from_generation", "unknown generation (chip)", src)
    if kind == "generation":
        dst = t.str("generation")
        if dst not in cat.chips:
            raise t.error("generation", "unknown generation (chip)", dst)
        if dst == src:
            raise t.error("generation", "same as from_generation: nothing to swap", dst)
        return Target(kind=kind, from_generation=src, to_generation=dst)
    reg = t.sub("regression", {})
    return Target(
        kind=kind,
        from_generation=src,
        to_generation=src,
        perf_multiplier=t.number("perf_multiplier", 1.0, positive=True),
        latency_multiplier=reg.number("latency_multiplier", 1.0, positive=True),
        error_rate=reg.number("error_rate", 0.0, max_value=1.0),
    )


def _waves(f: Fields, regions: set[str]) -> tuple[tuple[str, ...], ...]:
    items = f.list("waves")
    if not items:
        raise f.error("waves", "needs at least one wave", items)
    seen: dict[str, int] = {}
    out: list[tuple[str, ...]] = []
    for i, wave in enumerate(items):
        if not isinstance(wave, list) or not wave:
            raise f.error(f"waves[{i}]", "expected a non-empty list of region names", wave)
        for name in wave:
            if name not in regions:
                raise f.error(f"waves[{i}]", "unknown region", name)
            if name in seen:
                raise f.error(
                    f"waves[{i}]", f"overlapping waves: region already in waves[{seen[name]}]", name
                )
            seen[name] = i
        out.append(tuple(str(n) for n in wave))
    return tuple(out)


def _failures(x: Fields, cat: Catalog, target: Target, units: dict[str, int]) -> Failures:
    """Rack failures (mtbf_h, mttr_h; optional when `parts` or `region` is given), part
    failures and drawn whole-region outages."""
    parts = parse_parts(x, cat, target.from_generation, target.to_generation, units)
    region = parse_region_failures(x)
    racks = x.has("mtbf_h") or not (parts or region)
    return Failures(
        mtbf_h=x.number("mtbf_h", positive=True) if racks else None,
        mttr_h=x.number("mttr_h", positive=True) if racks else 1.0,
        seed=x.int("seed", 0),
        correlated_prob_per_day=x.number("correlated_prob_per_day", 0.0, max_value=1.0),
        correlated_racks=x.int("correlated_racks", 0),
        parts=parts,
        region=region,
    )


def _replay(r: Fields, llm: bool) -> ReplaySpec:
    return ReplaySpec(
        drill=parse_drill(r, llm),
        enabled=r.bool("enabled", True),
        span_s=r.number("span_s", 2.0, positive=True),
        max_requests=r.int("max_requests", 400_000, positive=True),
        max_hosts=r.int("max_hosts", 4, positive=True),
        seed=r.int("seed", 0),
    )


def _optimize(o: Fields, rate: float) -> OptimizeSpec:
    rates = o.list("install_racks_per_day", [rate])
    sizes = o.list("wave_sizes", [1, 2, 4, 8])
    if not rates or not sizes:
        raise o.error("install_racks_per_day", "candidate lists must not be empty", rates)
    for i, _ in enumerate(rates):
        Fields({"v": rates[i]}, o.file, o.path(f"install_racks_per_day[{i}]")).number(
            "v", positive=True
        )
    for i, _ in enumerate(sizes):
        Fields({"v": sizes[i]}, o.file, o.path(f"wave_sizes[{i}]")).int("v", positive=True)
    return OptimizeSpec(
        headroom_margin=o.number("headroom_margin", 0.0, min_value=-1.0),
        install_rates=tuple(float(r) for r in rates),
        wave_sizes=tuple(int(s) for s in sizes),
    )


def _check_work(plan: Plan, roll: Fields, timeline: Fields) -> None:
    """Refuse plans that cannot make progress or whose timeline is too long for its step."""
    allowed = {plan.target.from_generation, plan.target.to_generation}
    for i, region in enumerate(plan.regions):
        for gen in region.racks:
            if gen not in allowed:
                raise UserError(
                    "racks of a generation this rollout neither swaps from nor to "
                    f"({', '.join(sorted(allowed))})",
                    file=plan.file,
                    field=f"fleet.regions[{i}].racks.{gen}",
                    value=gen,
                )
        racks = region.racks.get(plan.target.from_generation, 0)
        in_wave = any(region.name in w for w in plan.waves)
        if racks and in_wave and math.floor(plan.drain_budget * sum(region.racks.values())) < 1:
            raise roll.error(
                "drain_budget",
                f"lets no rack of region {region.name} out at once, but it has racks to swap",
                plan.drain_budget,
            )
    steps = math.ceil(plan.horizon_days * 24.0 / plan.step_h)
    if steps > plan.max_steps:
        raise UserError(
            f"timeline of {steps} steps exceeds max_steps {plan.max_steps}; use a coarser step_h",
            file=plan.file,
            field=timeline.path("step_h"),
            value=plan.step_h,
        )
