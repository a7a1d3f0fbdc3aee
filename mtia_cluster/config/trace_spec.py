"""The trace mix spec (configs/traces/*.yaml, `trace generate --spec`) as typed models.

``traces/generators/mix.py`` validates a spec against :class:`TraceSpecFile` before it draws
anything: unknown keys (``arrival:``, ``rate:``), wrong types and out-of-range values are one
line with a did-you-mean. Arrivals are a tagged union on ``process`` (default poisson), so a
``cv`` on Poisson arrivals is refused rather than ignored. ``mtia-cluster schema trace-spec``
prints the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from mtia_cluster.config.schema import Strict

Positive = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(gt=0)]


MAX_RATIO = 1e6  # largest inter-arrival CV and diurnal peak-to-trough ratio accepted


class Poisson(Strict):
    process: Literal["poisson"] = "poisson"


class Renewal(Strict):
    """Gamma or Weibull inter-arrivals with coefficient of variation `cv`."""

    process: Literal["gamma", "weibull"]
    # bounded: gamma's shape 1/cv**2 underflows to 0 near cv = 1e154 (docs/traces.md)
    cv: Annotated[float, Field(gt=0.0, le=MAX_RATIO)]


class OnOff(Strict):
    process: Literal["onoff"]
    burst_factor: Annotated[float, Field(ge=1.0)] = 5.0
    mean_on_s: Positive = 1.0
    on_fraction: Annotated[float, Field(gt=0.0, le=1.0)] | None = None  # default 1/burst


class Offline(Strict):
    process: Literal["offline"]


class ServeGen(Strict):
    process: Literal["servegen"]
    path: str
    start_s: Annotated[float, Field(ge=0.0)] = 0.0
    rate_scale: Positive = 1.0


def _process_tag(value: Any) -> str:
    return f"arrivals:{value.get('process', 'poisson') if isinstance(value, dict) else 'poisson'}"


Arrivals = Annotated[
    Annotated[Poisson, Tag("arrivals:poisson")]
    | Annotated[Renewal, Tag("arrivals:gamma")]
    | Annotated[Renewal, Tag("arrivals:weibull")]
    | Annotated[OnOff, Tag("arrivals:onoff")]
    | Annotated[Offline, Tag("arrivals:offline")]
    | Annotated[ServeGen, Tag("arrivals:servegen")],
    Discriminator(_process_tag),
]


class Diurnal(Strict):
    # bounded: the trough, 2 / (peak_to_trough + 1) of the mean, rounds to 0 near 1e16
    peak_to_trough: Annotated[float, Field(ge=1.0, le=MAX_RATIO)] = 1.0
    peak_hour_local: Annotated[float, Field(ge=0.0, le=24.0)] = 20.0
    weekly: list[Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: [1.0] * 7, min_length=7, max_length=7
    )
    day_s: Positive = 86_400.0  # length of the simulated "day" (600: a day in 10 minutes)


class MLPerfSizes(Strict):
    """MLPerf DLRM-v2 query sizes (an empirical table)."""

    dist: Literal["mlperf-dlrm-v2"]


class FittedSizes(Strict):
    """Lognormal or Pareto sizes fitted to a mean and a p99, optionally capped."""

    dist: Literal["lognormal", "pareto"]
    mean: Positive
    p99: Positive
    max: Positive | None = None


class ConstantSizes(Strict):
    dist: Literal["constant"]
    value: PositiveInt


def _dist_tag(noun: str, default: str | None) -> Any:
    def tag(value: Any) -> str:
        return f"{noun}:{value.get('dist', default) if isinstance(value, dict) else default}"

    return tag


Sizes = Annotated[
    Annotated[MLPerfSizes, Tag("sizes:mlperf-dlrm-v2")]
    | Annotated[FittedSizes, Tag("sizes:lognormal")]
    | Annotated[FittedSizes, Tag("sizes:pareto")]
    | Annotated[ConstantSizes, Tag("sizes:constant")],
    Discriminator(_dist_tag("sizes", None)),
]


class TableLengths(Strict):
    """Azure 2023 empirical (input, output) marginals."""

    dist: Literal["azure-2023-code", "azure-2023-conv"]


class ServeGenLengths(Strict):
    dist: Literal["servegen"]
    path: str  # a ServeGen dataset JSON
    window: Annotated[int, Field(ge=0)] | None = None  # default: every window pooled


class SeparateLengths(Strict):
    """Independent size specs for input and output tokens."""

    dist: Literal["separate"] = "separate"
    input: Sizes
    output: Sizes


Lengths = Annotated[
    Annotated[TableLengths, Tag("lengths:azure-2023-code")]
    | Annotated[TableLengths, Tag("lengths:azure-2023-conv")]
    | Annotated[ServeGenLengths, Tag("lengths:servegen")]
    | Annotated[SeparateLengths, Tag("lengths:separate")],
    Discriminator(_dist_tag("lengths", "separate")),
]


class Sessions(Strict):
    mean_turns: Annotated[float, Field(ge=1.0)] = 3.0
    think_time_s: Positive = 30.0
    max_context_tokens: PositiveInt = 32_768


class PrefixBlocks(Strict):
    """Hash chains for prefix caching (traces/generators/prefix.py)."""

    block_tokens: PositiveInt = 512
    system_prompts: Annotated[int, Field(ge=0)] = 0
    system_prompt_tokens: Annotated[int, Field(ge=0, validate_default=True)] = 0

    @field_validator("system_prompt_tokens")
    @classmethod
    def _prompt_length(cls, tokens: int, info: ValidationInfo) -> int:
        """System prompts need a length (checked on this field, so the error names it)."""
        if info.data.get("system_prompts") and not tokens:
            raise ValueError("needs a positive length with system_prompts")
        return tokens


class ServiceSpec(Strict):
    name: str = Field(min_length=1)
    kind: Literal["rr", "llm"]
    rate_per_s: Positive
    arrivals: Arrivals = Poisson()
    diurnal: Diurnal | None = None
    items: Sizes | None = None  # rr
    lengths: Lengths | None = None  # llm
    sessions: Sessions | None = None  # llm
    prefix_blocks: PrefixBlocks | None = None  # llm

    @model_validator(mode="after")
    def _kind_fields(self) -> ServiceSpec:
        wrong = ("lengths", "sessions", "prefix_blocks") if self.kind == "rr" else ("items",)
        for key in wrong:
            if getattr(self, key) is not None:
                raise ValueError(f"{key} does not apply to {self.kind} services")
        return self


class RegionMix(Strict):
    weight: Positive = 1.0
    tz_offset_h: Annotated[float, Field(ge=-14.0, le=14.0)] = 0.0


class TraceSpecFile(Strict):
    """A trace mix spec (docs/traces.md)."""

    name: str | None = None
    duration_s: Positive | None = None  # exactly one of duration_s, requests
    requests: PositiveInt | None = None
    start_hour_utc: Annotated[float, Field(ge=0.0, le=168.0)] = 0.0
    regions: dict[str, RegionMix] | None = Field(None, min_length=1)
    services: list[ServiceSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_length(self) -> TraceSpecFile:
        if (self.duration_s is None) == (self.requests is None):
            raise ValueError("give exactly one of requests or duration_s")
        return self
