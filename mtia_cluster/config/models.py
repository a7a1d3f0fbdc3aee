"""The scenario file as typed models (shape, types, ranges); `scenario.py` adds the catalog.

Pools are a tagged union on the kind of the catalog model they serve (``rr``, ``llm``,
``synthetic``): an R&R pool takes ``batching``, an LLM pool its serving settings (``tp``,
``pp``, ``dtype``, token budget, KV blocks, disaggregation), and a key of another kind is
refused as unknown. The discriminator reads the model's kind from the catalog that
:func:`pool_kinds` makes visible while one document is validated.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, get_args

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from mtia_cluster.config.schema import Strict

# Router policies (engine/router.py implements each; this is the one list of their names).
RouterPolicy = Literal[
    "round_robin",
    "random",
    "weighted",
    "least_outstanding",
    "p2c",
    "session_affinity",
    "prefix_affinity",
]
POLICIES: tuple[str, ...] = get_args(RouterPolicy)
# Default weights of the KV-aware policies' scores (llm-d's default scheduler profile: prefix
# cache scorer weight 3, queue scorer weight 2; Red Hat OpenShift AI 3.4 docs, "Configuring
# scheduler settings for LLM inference services").
AFFINITY_WEIGHT, LOAD_WEIGHT = 3.0, 2.0
# KV admission policy of an LLM replica (engine/llm/limits.py CAPACITY_POLICIES says what each
# does and cites TensorRT-LLM's CapacitySchedulerPolicy).
CapacityPolicy = Literal["max_utilization", "guaranteed_no_evict"]
# link_* kinds act on the fabric (engine/fabric/): NICs (`links` hosts, `nics`) or `spines`
EventKind = Literal[
    "fail", "repair", "drain", "undrain", "link_fail", "link_repair", "link_degrade"
]
OnFailure = Literal["retry", "fail"]
FailureLevel = Literal["host", "rack", "region"]
# Global routing policies (engine/global_routing.py): `home` keeps every request in its region
# (regions are islands, rows without a region spread by weight); `spill` sends a request whose
# home region is down or over the threshold to the nearest region with headroom.
GlobalPolicy = Literal["home", "spill"]
Dtype = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8", "mx8", "mx4", "fp4"]
KVLink = Literal["scale_up", "scale_out"]

PositiveInt = Annotated[int, Field(gt=0)]
Index = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Router(Strict):
    """How each (region, service) router picks a cell (engine/router.py)."""

    policy: RouterPolicy = "least_outstanding"
    affinity_weight: float = Field(AFFINITY_WEIGHT, ge=0.0)  # prefix/session_affinity only
    load_weight: float = Field(LOAD_WEIGHT, ge=0.0)  # prefix/session_affinity only


class Batching(Strict):
    """R&R host batching: a batch closes at max_items or after max_wait_us."""

    max_items: PositiveInt = 1024
    max_wait_us: float = Field(1000.0, ge=0.0)


class PDRole(Strict):
    """One side of a disaggregated replica: `instances` instances of `tp` accelerators each."""

    instances: PositiveInt = 1
    tp: PositiveInt = 1


class Disaggregation(Strict):
    """Prefill/decode disaggregation (engine/llm/disagg.py): a replica is a prefill pool of
    ``prefill.instances x prefill.tp`` accelerators followed by a decode pool of
    ``decode.instances x decode.tp``. ``prefill_accelerators: n`` is the one-to-one shorthand
    (one prefill instance of n, one decode instance of the rest of the replica). `link`
    forces the KV link's fabric; by default each (prefill, decode) pair uses scale-up when
    both are in one scale-up domain, RDMA scale-out otherwise."""

    prefill_accelerators: PositiveInt | None = None  # 1:1 shorthand; default: half the replica
    prefill: PDRole | None = None
    decode: PDRole | None = None
    link: KVLink | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Disaggregation:
        if (self.prefill is None) != (self.decode is None):
            raise ValueError("give prefill and decode together")
        if self.prefill is not None and self.prefill_accelerators is not None:
            raise ValueError("give either prefill_accelerators or prefill and decode pools")
        return self


class _Pool(Strict):
    """Fields every pool has; exactly one of racks, hosts, accelerators."""

    service: str = Field(min_length=1)
    model: str
    platform: str
    racks: PositiveInt | None = None
    hosts: PositiveInt | None = None
    accelerators: PositiveInt | None = None
    error_rate: Fraction = 0.0  # seeded fraction of served requests marked failed


# x service time: bounded so that busy times stay far inside int64 nanoseconds (a 1e300
# multiplier overflowed to negative completion times)
MAX_MULTIPLIER = 1e6


class RRPool(_Pool):
    """An R&R pool: one cell per host, requests batched per socket."""

    batching: Batching = Batching()
    service_time_multiplier: float = Field(1.0, gt=0.0, le=MAX_MULTIPLIER)
    # hosts the model's embedding tables are sharded across (docs/network.md, "Remote
    # embedding lookups"): each batch fetches the rows of the other hosts over the fabric
    embedding_hosts: PositiveInt = 1


class SyntheticPool(_Pool):
    """A synthetic pool: one queueing server per `accelerators_per_replica` accelerators."""

    accelerators_per_replica: PositiveInt = 1
    service_time_multiplier: float = Field(1.0, gt=0.0, le=MAX_MULTIPLIER)


class LLMPool(_Pool):
    """An LLM pool: replicas of tp x pp accelerators (engine/llm/factory.py)."""

    accelerators_per_replica: PositiveInt | None = None  # default tp x pp
    tp: PositiveInt | None = None  # default accelerators_per_replica / (pp x ep), else 1
    pp: PositiveInt = 1
    ep: PositiveInt = 1  # expert-parallel groups (MoE models; perf/moe.py): tp x ep x pp chips
    dtype: Dtype | None = None  # default: the model's dtype
    max_num_batched_tokens: PositiveInt = 2048
    max_num_seqs: PositiveInt = 256
    block_size: PositiveInt = 16
    prefix_caching: bool = False
    capacity_policy: CapacityPolicy = "max_utilization"
    max_tokens: PositiveInt | None = None  # guaranteed_no_evict reserves max(output, this)
    disaggregation: Disaggregation | None = None


_KIND_OF_MODEL: contextvars.ContextVar[Callable[[str], str | None]] = contextvars.ContextVar(
    "pool_kind_of_model"
)


@contextlib.contextmanager
def pool_kinds(kind_of_model: Callable[[str], str | None]) -> Iterator[None]:
    """Let the pool discriminator see the catalog while one document is validated."""
    token = _KIND_OF_MODEL.set(kind_of_model)
    try:
        yield
    finally:
        _KIND_OF_MODEL.reset(token)


def _pool_tag(value: Any) -> str:
    """The union member for a pool mapping: the kind of its catalog model (R&R if unknown,
    so that the unknown model is what gets reported)."""
    model = value.get("model") if isinstance(value, dict) else getattr(value, "model", None)
    lookup = _KIND_OF_MODEL.get(None)
    kind = lookup(model) if lookup is not None and isinstance(model, str) else None
    return f"pool:{kind or 'rr'}"


Pool = Annotated[
    Annotated[RRPool, Tag("pool:rr")]
    | Annotated[LLMPool, Tag("pool:llm")]
    | Annotated[SyntheticPool, Tag("pool:synthetic")],
    Discriminator(_pool_tag),
]


class RegionEnergy(Strict):
    """A region's grid figures for cost and carbon (mtia_cluster/cost/data.py): `grid` names
    an entry of configs/catalog/cost/regions.yaml (default: by the region's name); the
    others override that entry's figures."""

    grid: str | None = Field(None, min_length=1)
    pue: float | None = Field(None, ge=1.0, le=5.0)
    usd_per_kwh: float | None = Field(None, ge=0.0, le=10.0)
    gco2e_per_kwh: float | None = Field(None, ge=0.0, le=2000.0)


class Region(Strict):
    name: str = Field(min_length=1)
    weight: float = Field(1.0, ge=0.0)  # share of trace rows without a region
    pools: list[Pool] = Field(min_length=1)
    energy: RegionEnergy | None = None  # cost/carbon grid figures (docs/planning.md)


class Event(Strict):
    """One fleet event (config/events.py); no target list means the whole region."""

    at_s: float = Field(ge=0.0)
    kind: EventKind
    region: str
    service: str | None = None
    hosts: list[Index] | None = Field(None, min_length=1)
    racks: list[Index] | None = Field(None, min_length=1)
    links: list[Index] | None = Field(None, min_length=1)
    nics: list[Index] | None = Field(None, min_length=1)  # link_*: which NICs of the hosts
    spines: list[Index] | None = Field(None, min_length=1)  # link_*: spine switches
    bandwidth_factor: float | None = Field(None, gt=0.0, le=1.0)  # link_degrade only
    on_failure: OnFailure = "retry"


class Failure(Strict):
    """Failures and repairs drawn from MTBF/MTTR per host or rack."""

    level: FailureLevel = "host"
    region: str | None = None
    mtbf_s: float = Field(gt=0.0)
    mttr_s: float = Field(gt=0.0)
    horizon_s: float = Field(gt=0.0)
    on_failure: OnFailure = "retry"


# Autoscaling defaults (engine/autoscale.py): Ray Serve's AutoscalingConfig defaults
# (target_ongoing_requests 2, metrics_interval_s 10, upscale_delay_s 30, downscale_delay_s 600;
# https://docs.ray.io/en/latest/serve/api/doc/ray.serve.config.AutoscalingConfig.html); the
# runtime init after the weights are loaded: 20 s, the top of the 5-20 s that a replica's
# torch.compile takes with a compile cache (https://docs.baseten.co/development/model/
# torch-compile-cache), assumed for a warm-cache fleet.
TARGET_ONGOING_REQUESTS, AUTOSCALE_INTERVAL_S = 2.0, 10.0
UPSCALE_COOLDOWN_S, DOWNSCALE_COOLDOWN_S, RUNTIME_INIT_S = 30.0, 600.0, 20.0


class Autoscaling(Strict):
    """A service's autoscaling policy, applied per region serving it (engine/autoscale.py).

    The region's cells for the service are its provisioned replicas (``max_replicas`` of
    them are used; default all); ``min_replicas`` always run. Exactly one target: busy
    fraction of the running replicas (``target_utilization``, in (0, 1]) or requests in
    flight per replica (``target_ongoing_requests``, Ray Serve's metric; the default)."""

    min_replicas: PositiveInt = 1
    max_replicas: PositiveInt | None = None  # default: every cell of the region's pools
    initial_replicas: PositiveInt | None = None  # default: min_replicas
    target_utilization: float | None = Field(None, gt=0.0, le=1.0)
    target_ongoing_requests: float | None = Field(None, gt=0.0)
    interval_s: float = Field(AUTOSCALE_INTERVAL_S, gt=0.0)  # decision period
    upscale_cooldown_s: float = Field(UPSCALE_COOLDOWN_S, ge=0.0)  # since the last change
    downscale_cooldown_s: float = Field(DOWNSCALE_COOLDOWN_S, ge=0.0)
    runtime_init_s: float = Field(RUNTIME_INIT_S, ge=0.0)  # start-up after the weights
    storage_gb_s: float | None = Field(None, gt=0.0)  # weights source; default: host NIC

    # cross-field checks on the later field, so the error names it and its value
    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, top: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_replicas")
        if top is not None and low is not None and top < low:
            raise ValueError(f"must be >= min_replicas ({low})")
        return top

    @field_validator("initial_replicas")
    @classmethod
    def _initial_in_range(cls, initial: int | None, info: ValidationInfo) -> int | None:
        low, top = info.data.get("min_replicas"), info.data.get("max_replicas")
        if initial is not None and low is not None and initial < low:
            raise ValueError(f"must be >= min_replicas ({low})")
        if initial is not None and top is not None and initial > top:
            raise ValueError(f"must be <= max_replicas ({top})")
        return initial

    @field_validator("target_ongoing_requests")
    @classmethod
    def _one_target(cls, target: float | None, info: ValidationInfo) -> float | None:
        if target is not None and info.data.get("target_utilization") is not None:
            raise ValueError("give one of target_utilization or target_ongoing_requests")
        return target


class SLOTargets(Strict):
    """A service's targets in ms (consumers read them as a dict of the keys given)."""

    p99_ms: float | None = Field(None, gt=0.0)
    ttft_p99_ms: float | None = Field(None, gt=0.0)
    tpot_p99_ms: float | None = Field(None, gt=0.0)


class VerdictOptions(Strict):
    """Options of the one verdict (results/verdict.py `VerdictRules`) for the scenario's runs.

    An unset option keeps LoadGen's Server default (600 s minimum duration, early stopping
    at 99 % confidence, a failed request counts as infinitely late). A fleet written by
    `mtia-cluster plan` carries the rules the plan judged it with (no minimum duration, no
    early stopping, every request ok: results.verdict.SEARCH_RULES), so that replaying it
    judges as the plan did; summary.json's `rules` and the console say which rules judged."""

    min_duration_s: float | None = Field(None, ge=0.0, le=1.0e6)
    early_stopping: bool | None = None
    confidence: float | None = Field(None, gt=0.0, lt=1.0)
    all_ok: bool | None = None


RttMs = Annotated[float, Field(ge=0.0, le=10_000.0)]


class GlobalRouting(Strict):
    """How requests move between regions (engine/global_routing.py, docs/network.md).

    `rtt_ms` overrides or adds region-to-region round-trip times (`{a: {b: ms}}`, one entry
    per unordered pair; both orders given must agree) over the catalog defaults
    (configs/network/regions.yaml)."""

    policy: GlobalPolicy = "home"
    # spill also when the home region's outstanding requests per live cell reach this (from
    # the previous boundary's reports plus this window's own sends); None: only outages spill
    spill_outstanding_per_cell: float | None = Field(None, gt=0.0)
    rtt_ms: dict[str, dict[str, RttMs]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _symmetric(self) -> GlobalRouting:
        """A pair given in both orders must agree; a region's RTT to itself is 0."""
        for a, row in self.rtt_ms.items():
            for b, ms in row.items():
                if a == b and ms != 0.0:
                    raise ValueError(f"rtt_ms.{a}.{b}: a region's RTT to itself is 0 (got {ms})")
                back = self.rtt_ms.get(b, {}).get(a)
                if back is not None and back != ms:
                    raise ValueError(f"rtt_ms.{a}.{b} = {ms} but rtt_ms.{b}.{a} = {back}")
        return self


class FabricOverrides(Strict):
    """Scenario overrides of every platform's scale-out fabric (catalog ``fabric:``;
    engine/fabric/, docs/network.md "Fabric"). Unset fields keep the catalog's value."""

    nics_per_host: int | None = Field(None, gt=0, le=64)
    nic_gbit_s: float | None = Field(None, gt=0.0, le=1.0e5)
    spines: int | None = Field(None, gt=0, le=1024)
    oversubscription: float | None = Field(None, ge=1.0, le=64.0)
    hop_latency_ns: int | None = Field(None, ge=0, le=10**9)


class ScenarioFile(Strict):
    """A scenario file (configs/scenarios/*.yaml; docs/engine.md)."""

    name: str | None = None  # default: the file name
    seed: int = Field(0, ge=0)
    report_interval_ms: float = Field(5.0, gt=0.0)
    metrics_interval_ms: float = Field(1000.0, gt=0.0)
    router: Router = Router()
    global_routing: GlobalRouting = GlobalRouting()
    regions: list[Region] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    slo: dict[str, SLOTargets] = Field(default_factory=dict)
    verdict: VerdictOptions = VerdictOptions()  # verdict rules; unset: LoadGen Server
    autoscaling: dict[str, Autoscaling] = Field(default_factory=dict)  # by service
    fabric: FabricOverrides = FabricOverrides()


class RegionSite(Strict):
    """A catalog region: the public region or city that stands for it, and its coordinates."""

    site: str = Field(min_length=1)
    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)


class MeasuredRtt(Strict):
    """One measured round-trip time between two catalog regions, with its source."""

    a: str
    b: str
    ms: float = Field(gt=0.0)
    source: str


class RegionCatalogFile(Strict):
    """configs/catalog/network/regions.yaml: sites and measured RTTs (docs/network.md)."""

    name: str
    fiber_km_per_ms: float = Field(gt=0.0)
    sources: dict[str, str]
    regions: dict[str, RegionSite] = Field(min_length=1)
    measured_rtt_ms: list[MeasuredRtt] = Field(min_length=1)
