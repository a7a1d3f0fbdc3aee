"""The rollout plan file (configs/rollouts/*.yaml) as typed models: shape, types, ranges.

``fleet/plan.py`` validates a plan against :class:`RolloutPlanFile` before reading it, so an
unknown key anywhere in a plan (``rollout.gate:``, ``failures.mtbf:``) is refused with one
line and a did-you-mean; cross-references (regions in waves, generations, catalog models) are
checked there. ``mtia-cluster schema rollout`` prints the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from mtia_cluster.config.schema import Strict

Positive = Annotated[float, Field(gt=0.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
# durations: at most 100 years (the timeline counts int64 ns, which hold 292 years; 1e300 h
# overflowed them into an OverflowError traceback)
MAX_HOURS = 100 * 365 * 24.0
Hours = Annotated[float, Field(gt=0.0, le=MAX_HOURS)]
HoursOrZero = Annotated[float, Field(ge=0.0, le=MAX_HOURS)]
Days = Annotated[float, Field(gt=0.0, le=MAX_HOURS / 24)]
DaysOrZero = Annotated[float, Field(ge=0.0, le=MAX_HOURS / 24)]


class CapacitySearch(Strict):
    """LLM per-rack capacity search (fleet/llm_capacity.py)."""

    window_s: Positive | None = None
    rel_tol: Annotated[float, Field(gt=0.0, le=0.5)] = 0.05
    hosts: PositiveInt | None = None
    seed: Annotated[int, Field(ge=0)] = 0


class Service(Strict):
    model: str
    slo_p99_ms: Positive
    baseline_p99_ms: Positive | None = None  # default: half the SLO
    capacity: Literal["fast", "replay"] = "replay"
    ttft_p99_ms: Positive | None = None  # LLM services only
    tpot_p99_ms: Positive | None = None
    capacity_search: CapacitySearch | None = None


class Demand(Strict):
    peak_rps: Positive
    peak_to_trough: Annotated[float, Field(ge=1.0)] = 1.0
    tz_offset_h: Annotated[float, Field(ge=-12.0, le=14.0)] = 0.0
    # at most doubling every week (1e300 overflowed the demand to inf)
    weekly_growth_pct: Annotated[float, Field(ge=-50.0, le=100.0)] = 0.0
    peak_hour_local: Annotated[float, Field(ge=0.0, le=24.0)] = 20.0


class PlanRegion(Strict):
    name: str = Field(min_length=1)
    racks: dict[str, Annotated[int, Field(ge=0)]]
    demand: Demand


class Fleet(Strict):
    regions: list[PlanRegion] = Field(min_length=1)
    units_per_rack: dict[str, PositiveInt] = Field(default_factory=dict)


class Regression(Strict):
    latency_multiplier: Positive = 1.0
    error_rate: Fraction = 0.0


class GenerationTarget(Strict):
    """Swap racks of one chip generation to another."""

    kind: Literal["generation"]
    from_generation: str
    generation: str


class ModelVersionTarget(Strict):
    """Roll a new model version onto racks of one generation."""

    kind: Literal["model_version"]
    from_generation: str
    perf_multiplier: Positive = 1.0
    regression: Regression | None = None


def _target_tag(value: Any) -> str:
    return f"target:{value.get('kind') if isinstance(value, dict) else None}"


Target = Annotated[
    Annotated[GenerationTarget, Tag("target:generation")]
    | Annotated[ModelVersionTarget, Tag("target:model_version")],
    Discriminator(_target_tag),
]


class SwapTime(Strict):
    drain: HoursOrZero = 0.0
    install: HoursOrZero
    burnin: HoursOrZero = 0.0


class Gates(Strict):
    p99_vs_slo_max: Positive = 1.0
    error_rate_max: Fraction = 0.001
    throughput_vs_baseline_min: NonNegative = 0.9
    window_h: Hours = 24.0


class Rollout(Strict):
    install_racks_per_day: Positive
    swap_time_h: SwapTime
    drain_budget: Fraction
    bake_days: DaysOrZero = 0.0
    gates: Gates = Gates()
    on_gate_failure: Literal["pause", "rollback"] = "rollback"


class Timeline(Strict):
    step_h: Hours = 1.0
    horizon_days: Days = 365.0
    max_steps: PositiveInt = 20000


class PartFailure(Strict):
    part: Literal["host", "accelerator"]
    mtbf_h: Hours
    mttr_h: Hours


class RegionFailure(Strict):
    mtbf_h: Hours
    mttr_h: Hours


class Failures(Strict):
    mtbf_h: Hours | None = None  # whole racks; required unless parts or region is given
    mttr_h: Hours | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    correlated_prob_per_day: Fraction = 0.0
    correlated_racks: Annotated[int, Field(ge=0)] = 0
    parts: list[PartFailure] = Field(default_factory=list)
    region: RegionFailure | None = None


class Drill(Strict):
    racks: PositiveInt = 1
    at_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    on_failure: Literal["retry", "fail"] = "retry"


class Replay(Strict):
    drill: Drill | None = None
    enabled: bool = True
    span_s: Positive = 2.0
    max_requests: PositiveInt = 400_000
    max_hosts: PositiveInt = 4
    seed: Annotated[int, Field(ge=0)] = 0


class Optimize(Strict):
    headroom_margin: Annotated[float, Field(ge=-1.0)] = 0.0
    install_racks_per_day: list[Positive] | None = Field(None, min_length=1)
    wave_sizes: list[PositiveInt] = Field([1, 2, 4, 8], min_length=1)


class RackEvent(Strict):
    at_day: DaysOrZero
    region: str
    kind: Literal["add", "remove"]
    racks: dict[str, PositiveInt] = Field(min_length=1)
    drain_h: HoursOrZero | None = None
    install_h: HoursOrZero | None = None
    burnin_h: HoursOrZero | None = None


class Outage(Strict):
    region: str
    at_day: DaysOrZero
    duration_h: Hours


class RolloutPlanFile(Strict):
    """A rollout plan (docs/rollout.md)."""

    name: str
    service: Service
    fleet: Fleet
    target: Target
    waves: list[Annotated[list[str], Field(min_length=1)]] = Field(min_length=1)
    rollout: Rollout
    timeline: Timeline = Timeline()
    failures: Failures | None = None
    optimize: Optimize | None = None
    replay: Replay | None = None
    events: list[RackEvent] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    failover: Literal["none", "proportional"] = "proportional"
