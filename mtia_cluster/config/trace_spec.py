"""The trace mix spec (configs/traces/*.yaml, `trace generate --spec`) as typed models.

``traces/generators/mix.py`` validates a spec against :class:`TraceSpecFile` before it draws
anything: unknown keys (``arrival:``, ``rate:``), wrong types and out-of-range values are one
line with a did-you-mean. Arrivals are a tagged union on ``process`` (default poisson), so a
``cv`` on Poisson arrivals is refused rather than ignored. ``mtia-cluster schema trace-spec``
prints the JSON Schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from mtia_cluster.config.schema import Strict

Positive = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class Poisson(Strict):
    process: Literal["poisson"] = "poisson"


class Renewal(Strict):
    """Gamma or Weibull inter-arrivals with coefficient of variation `cv`."""

    process: Literal["gamma", "weibull"]
    cv: Positive


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
    process = value.get("process", "poisson") if isinstance(value, dict) else "poisson"
    return f"arrivals:{'renewal' if process in ('gamma', 'weibull') else process}"


Arrivals = Annotated[
    Annotated[Poisson, Tag("arrivals:poisson")]
    | Annotated[Renewal, Tag("arrivals:renewal")]
    | Annotated[OnOff, Tag("arrivals:onoff")]
    | Annotated[Offline, Tag("arrivals:offline")]
    | Annotated[ServeGen, Tag("arrivals:servegen")],
    Discriminator(_process_tag),
]


class Diurnal(Strict):
    peak_to_trough: Annotated[float, Field(ge=1.0)] = 1.0
    peak_hour_local: Annotated[float, Field(ge=0.0, le=24.0)] = 20.0
    weekly: list[Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: [1.0] * 7, min_length=7, max_length=7
    )


class Sizes(Strict):
    """A size distribution (items, or one side of token lengths)."""

    dist: Literal["mlperf-dlrm-v2", "lognormal", "pareto", "constant"]
    mean: Positive | None = None  # lognormal, pareto
    p99: Positive | None = None
    value: PositiveInt | None = None  # constant
    max: Positive | None = None  # cap (lognormal, pareto)


class Lengths(Strict):
    """LLM (input, output) token lengths."""

    dist: Literal["azure-2023-code", "azure-2023-conv", "servegen", "separate"] = "separate"
    input: Sizes | None = None  # separate
    output: Sizes | None = None
    path: str | None = None  # servegen dataset JSON
    window: Annotated[int, Field(ge=0)] | None = None


class Sessions(Strict):
    mean_turns: Annotated[float, Field(ge=1.0)] = 3.0
    think_time_s: Positive = 30.0
    max_context_tokens: PositiveInt = 32_768


class ServiceSpec(Strict):
    name: str = Field(min_length=1)
    kind: Literal["rr", "llm"]
    rate_per_s: Positive
    arrivals: Arrivals = Poisson()
    diurnal: Diurnal | None = None
    items: Sizes | None = None  # rr
    lengths: Lengths | None = None  # llm
    sessions: Sessions | None = None  # llm

    @model_validator(mode="after")
    def _kind_fields(self) -> ServiceSpec:
        wrong = ("lengths", "sessions") if self.kind == "rr" else ("items",)
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
