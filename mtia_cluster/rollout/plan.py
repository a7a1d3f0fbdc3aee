"""Rollout plans (`configs/rollouts/*.yaml`): parsed and validated into frozen dataclasses.

A plan names the fleet (regions and their racks by generation), the service (model, SLO,
baseline p99), demand per region (peak, diurnal peak:trough ratio, timezone, weekly growth),
the target (a chip generation to swap racks to, or a model version with a performance
multiplier and an optional injected regression), the waves, the install rate, the per-rack
swap time, the drain budget, bake time, health gates and what a failed gate does. Every
problem is one UserError naming file, field and value: the shape, types and ranges are
checked once against `config.rollout_plan.RolloutPlanFile` (unknown keys refused); the typed
model is then read here, which adds only the checks that need the catalog or another part of
the plan (known chips and model, waves of known regions, events and outages in the horizon).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.config import apply_overrides, load_yaml
from mtia_cluster.config import rollout_plan as rp
from mtia_cluster.config.models import OnFailure
from mtia_cluster.config.rollout_plan import RolloutPlanFile
from mtia_cluster.config.schema import validate
from mtia_cluster.errors import UserError
from mtia_cluster.rollout.llm_capacity import DEFAULT_SEARCH, CapacitySearch, parse_llm_slo
from mtia_cluster.rollout.outages import (
    Outage,
    RegionFailureSpec,
    parse_outages,
    parse_region_failures,
)
from mtia_cluster.rollout.parts import PartSpec, parse_parts
from mtia_cluster.rollout.rack_events import RackEvent, parse_rack_events
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
    parts: tuple[PartSpec, ...] = ()  # host / accelerator failures (rollout/parts.py)
    region: RegionFailureSpec | None = None  # drawn whole-region outages (rollout/outages.py)


@dataclass(frozen=True)
class DrillSpec:
    """`replay.drill`: an N-1 failure drill in every replayed moment (rollout/drill.py)."""

    racks: int  # racks of the region failed in the drill
    at_fraction: float  # of the replay window, when they fail
    on_failure: OnFailure  # retry | fail: what happens to their in-flight work


@dataclass(frozen=True)
class ReplaySpec:
    """Exact replays at the moments that matter (docs/rollout.md, "Replays")."""

    enabled: bool = True
    span_s: float = 2.0  # simulated seconds of Poisson arrivals per moment (at least)
    max_requests: int = 400_000  # per replay; a larger region is replayed as a slice
    max_hosts: int = 4  # hosts in a slice (at least one per serving version)
    seed: int = 0
    drill: DrillSpec | None = None  # N-1 failure drill in every replayed moment (rollout/drill.py)


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
    # racks added / removed at given days (the plan's `events:`, rollout/rack_events.py)
    rack_events: tuple[RackEvent, ...] = ()
    outages: tuple[Outage, ...] = ()  # scheduled whole-region outages (rollout/outages.py)
    failover: str = "proportional"  # a down region's demand: none (lost) | proportional
    ttft_p99_s: float | None = None  # LLM: p99 TTFT bound of the capacity search (optional)
    tpot_p99_s: float | None = None  # LLM: p99 TPOT bound of the capacity search (optional)
    capacity_search: CapacitySearch = DEFAULT_SEARCH  # LLM replay capacity search config

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
    doc = validate(RolloutPlanFile, data, file)  # shape, types, ranges; cross-references below
    svc = doc.service
    if svc.model not in cat.models:
        raise UserError("unknown model", file=file, field="service.model", value=svc.model)
    slo_p99_s = svc.slo_p99_ms / 1e3
    base_ms = svc.baseline_p99_ms if svc.baseline_p99_ms is not None else slo_p99_s * 1e3 * 0.5
    llm = not isinstance(cat.model(svc.model), RRModel)
    ttft_p99_s, tpot_p99_s, search = parse_llm_slo(svc, slo_p99_s, llm, file)
    regions = _regions(doc.fleet, cat, file)
    units = _units(doc.fleet, cat, file)
    target = _target(doc.target, cat, file)
    names = {r.name for r in regions}
    failures = doc.failures
    plan = Plan(
        name=doc.name,
        file=str(file),
        model=svc.model,
        slo_p99_s=slo_p99_s,
        baseline_p99_s=base_ms / 1e3,
        capacity_mode=svc.capacity,
        regions=regions,
        units_per_rack=units,
        target=target,
        waves=_waves(doc.waves, names, file),
        **_rollout_fields(doc),
        failures=_failures(failures, cat, target, units, file) if failures is not None else None,
        optimize=_optimize(doc.optimize or rp.Optimize(), doc.rollout.install_racks_per_day),
        replay=_replay(doc.replay or rp.Replay(), llm, file),
        rack_events=parse_rack_events(
            doc.events,
            file,
            names,
            {target.from_generation, target.to_generation},
            doc.timeline.horizon_days,
        ),
        outages=parse_outages(doc.outages, file, names, doc.timeline.horizon_days),
        failover=doc.failover,
        ttft_p99_s=ttft_p99_s,
        tpot_p99_s=tpot_p99_s,
        capacity_search=search,
    )
    _check_work(plan, file)
    return plan


def _rollout_fields(doc: RolloutPlanFile) -> dict[str, Any]:
    """The plan's `rollout:` (install rate, swap times, drain budget, bake, gates) and
    `timeline:` fields, as Plan keyword arguments."""
    roll, swap, timeline, gates = (
        doc.rollout,
        doc.rollout.swap_time_h,
        doc.timeline,
        doc.rollout.gates,
    )
    return {
        "install_racks_per_day": roll.install_racks_per_day,
        "drain_h": swap.drain,
        "install_h": swap.install,
        "burnin_h": swap.burnin,
        "drain_budget": roll.drain_budget,
        "bake_days": roll.bake_days,
        "gates": Gates(
            p99_vs_slo_max=gates.p99_vs_slo_max,
            error_rate_max=gates.error_rate_max,
            throughput_vs_baseline_min=gates.throughput_vs_baseline_min,
            window_h=gates.window_h,
        ),
        "on_gate_failure": roll.on_gate_failure,
        "step_h": timeline.step_h,
        "horizon_days": timeline.horizon_days,
        "max_steps": timeline.max_steps,
    }


def _unknown_chip(cat: Catalog, gen: str, file: str | Path | None, field: str) -> None:
    if gen not in cat.chips:
        raise UserError("unknown generation (chip)", file=file, field=field, value=gen)


def _regions(fleet: rp.Fleet, cat: Catalog, file: str | Path | None) -> tuple[Region, ...]:
    """Regions with their racks (known chips) and demand; names unique."""
    out: list[Region] = []
    seen: set[str] = set()
    for i, r in enumerate(fleet.regions):
        where = f"fleet.regions[{i}]"
        if r.name in seen:
            raise UserError("duplicate region", file=file, field=f"{where}.name", value=r.name)
        seen.add(r.name)
        for gen in r.racks:
            _unknown_chip(cat, gen, file, f"{where}.racks.{gen}")
        d = r.demand
        demand = Demand(
            peak_rps=d.peak_rps,
            peak_to_trough=d.peak_to_trough,
            tz_offset_h=d.tz_offset_h,
            weekly_growth_pct=d.weekly_growth_pct,
            peak_hour_local=d.peak_hour_local,
        )
        out.append(Region(name=r.name, racks=dict(r.racks), demand=demand))
    return tuple(out)


def _units(fleet: rp.Fleet, cat: Catalog, file: str | Path | None) -> dict[str, int]:
    for gen in fleet.units_per_rack:
        _unknown_chip(cat, gen, file, f"fleet.units_per_rack.{gen}")
    return dict(fleet.units_per_rack)


def _target(
    t: rp.GenerationTarget | rp.ModelVersionTarget, cat: Catalog, file: str | Path | None
) -> Target:
    src = t.from_generation
    _unknown_chip(cat, src, file, "target.from_generation")
    if isinstance(t, rp.GenerationTarget):
        dst = t.generation
        _unknown_chip(cat, dst, file, "target.generation")
        if dst == src:
            raise UserError(
                "same as from_generation: nothing to swap",
                file=file,
                field="target.generation",
                value=dst,
            )
        return Target(kind=t.kind, from_generation=src, to_generation=dst)
    reg = t.regression or rp.Regression()
    return Target(
        kind=t.kind,
        from_generation=src,
        to_generation=src,
        perf_multiplier=t.perf_multiplier,
        latency_multiplier=reg.latency_multiplier,
        error_rate=reg.error_rate,
    )


def _waves(
    waves: list[list[str]], regions: set[str], file: str | Path | None
) -> tuple[tuple[str, ...], ...]:
    """Waves of known regions; no region in two waves."""
    seen: dict[str, int] = {}
    for i, wave in enumerate(waves):
        for name in wave:
            if name not in regions:
                raise UserError("unknown region", file=file, field=f"waves[{i}]", value=name)
            if name in seen:
                raise UserError(
                    f"overlapping waves: region already in waves[{seen[name]}]",
                    file=file,
                    field=f"waves[{i}]",
                    value=name,
                )
            seen[name] = i
    return tuple(tuple(wave) for wave in waves)


def _failures(
    x: rp.Failures, cat: Catalog, target: Target, units: dict[str, int], file: str | Path | None
) -> Failures:
    """Rack failures (mtbf_h, mttr_h; optional when `parts` or `region` is given), part
    failures and drawn whole-region outages."""
    parts = parse_parts(x.parts, cat, target.from_generation, target.to_generation, units)
    region = parse_region_failures(x.region)
    racks = x.mtbf_h is not None or not (parts or region)
    if racks:
        for key in ("mtbf_h", "mttr_h"):
            if getattr(x, key) is None:
                raise UserError("missing required field", file=file, field=f"failures.{key}")
    return Failures(
        mtbf_h=x.mtbf_h if racks else None,
        mttr_h=x.mttr_h if racks and x.mttr_h is not None else 1.0,
        seed=x.seed,
        correlated_prob_per_day=x.correlated_prob_per_day,
        correlated_racks=x.correlated_racks,
        parts=parts,
        region=region,
    )


def parse_drill(d: rp.Drill | None, llm: bool, file: str | Path | None) -> DrillSpec | None:
    """`replay.drill` (validated by the plan model), or None. Refused for LLM plans: the engine
    fails LLM replicas, but the drill's slice scaling counts one engine host per rack share,
    which an LLM replica spanning several hosts breaks."""
    if d is None:
        return None
    if llm:
        raise UserError(
            "LLM replicas cannot fail in a drill yet (slice scaling)",
            file=file,
            field="replay.drill",
            value=d.model_dump(exclude_unset=True),
        )
    return DrillSpec(racks=d.racks, at_fraction=d.at_fraction, on_failure=d.on_failure)


def _replay(r: rp.Replay, llm: bool, file: str | Path | None) -> ReplaySpec:
    return ReplaySpec(
        drill=parse_drill(r.drill, llm, file),
        enabled=r.enabled,
        span_s=r.span_s,
        max_requests=r.max_requests,
        max_hosts=r.max_hosts,
        seed=r.seed,
    )


def _optimize(o: rp.Optimize, rate: float) -> OptimizeSpec:
    rates = o.install_racks_per_day if o.install_racks_per_day is not None else [rate]
    return OptimizeSpec(
        headroom_margin=o.headroom_margin,
        install_rates=tuple(float(r) for r in rates),
        wave_sizes=tuple(int(s) for s in o.wave_sizes),
    )


def _check_work(plan: Plan, file: str | Path | None) -> None:
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
            raise UserError(
                f"lets no rack of region {region.name} out at once, but it has racks to swap",
                file=file,
                field="rollout.drain_budget",
                value=plan.drain_budget,
            )
    steps = math.ceil(plan.horizon_days * 24.0 / plan.step_h)
    if steps > plan.max_steps:
        raise UserError(
            f"timeline of {steps} steps exceeds max_steps {plan.max_steps}; use a coarser step_h",
            file=plan.file,
            field="timeline.step_h",
            value=plan.step_h,
        )
