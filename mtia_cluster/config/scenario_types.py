"""The validated scenario's types: regions, pools and their serving settings.

They live apart from the loader (config/scenario.py, which builds them from a file) so that
checks on a built scenario (config/limits.py) can name them without importing the loader,
which itself runs those checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtia_cluster.config.events import EventSpec, FailureSpec
from mtia_cluster.config.models import AFFINITY_WEIGHT, LOAD_WEIGHT, Autoscaling, FabricOverrides
from mtia_cluster.config.network import GlobalRoutingSpec
from mtia_cluster.cost.data import Grid
from mtia_cluster.slo import ServiceSLO


@dataclass(frozen=True)
class PDShape:
    """A disaggregated replica: `prefill_instances` x `prefill_tp` accelerators, then
    `decode_instances` x `decode_tp` (config/models.py ``Disaggregation``)."""

    prefill_instances: int
    prefill_tp: int
    decode_instances: int
    decode_tp: int

    @property
    def accelerators(self) -> int:
        return self.prefill_instances * self.prefill_tp + self.decode_instances * self.decode_tp


@dataclass(frozen=True)
class LLMSettings:
    """An LLM pool's serving settings, resolved at load (engine/llm/factory.py builds with
    them): tp x pp = the replica's accelerators unless the replica is disaggregated."""

    tp: int
    pp: int
    dtype: str
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 256
    block_size: int = 16
    prefix_caching: bool = False
    pd: PDShape | None = None  # disaggregated: the prefill and decode pools of a replica
    kv_link: str | None = None  # disaggregated: forced scale_up | scale_out (None: per pair)
    ep: int = 1  # expert-parallel groups of tp chips (MoE models)
    capacity_policy: str = "max_utilization"  # KV admission (engine/llm/limits.py)
    max_tokens: int | None = None  # per-request max_tokens the KV reservation assumes


@dataclass(frozen=True)
class PoolSpec:
    """Accelerators of one platform serving one service with one model."""

    service: str
    model: str
    kind: str  # rr | llm | synthetic
    platform: str
    accelerators: int
    replica_size: int  # accelerators per cell (synthetic/LLM); per host for R&R
    max_items: int
    max_wait_ns: int
    field_prefix: str
    count_key: str = "racks"  # which of racks | hosts | accelerators sized the pool
    service_time_multiplier: float = 1.0  # x accelerator occupancy per batch (R&R/synthetic)
    error_rate: float = 0.0  # fraction of served requests returned as failed (injected)
    embedding_hosts: int = 1  # R&R: hosts sharing the embedding tables (remote lookups)
    llm: LLMSettings | None = None  # LLM pools only


@dataclass(frozen=True)
class RegionSpec:
    name: str
    weight: float
    pools: tuple[PoolSpec, ...]
    grid: Grid | None = None  # PUE, price, carbon of its energy (cost/data.py region_grid)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario; `raw` is the resolved document (after --set overrides), kept
    for manifests and for shards that re-validate it."""

    name: str
    seed: int
    report_interval_ns: int
    metrics_interval_ns: int
    policy: str
    regions: tuple[RegionSpec, ...]
    slo: dict[str, ServiceSLO]  # the one SLO type (mtia_cluster/slo.py), parsed here once
    file: str | None
    raw: dict[str, Any]
    events: tuple[EventSpec, ...] = ()  # fleet events inside the replay (config/events.py)
    failures: tuple[FailureSpec, ...] = ()  # failures drawn from MTBF/MTTR (config/events.py)
    # KV-aware routers: score = affinity_weight x affinity + load_weight x queue score
    router_weights: tuple[float, float] = (AFFINITY_WEIGHT, LOAD_WEIGHT)
    # cross-region routing and RTTs (config/network.py); None: regions are islands
    global_routing: GlobalRoutingSpec | None = None
    # per service: replicas added and removed during the replay (engine/autoscale.py)
    autoscaling: dict[str, Autoscaling] = field(default_factory=dict)
    # scale-out fabric overrides (engine/fabric/)
    fabric: FabricOverrides = field(default_factory=FabricOverrides)
    # keyword arguments of results.verdict.VerdictRules from `verdict:` (the options set;
    # empty: LoadGen Server's rules). Writers judge the run with VerdictRules(**verdict).
    verdict: dict[str, Any] = field(default_factory=dict)

    @property
    def services(self) -> list[str]:
        """Service names in first-seen order (the simulation's service indices)."""
        out: list[str] = []
        for r in self.regions:
            for p in r.pools:
                if p.service not in out:
                    out.append(p.service)
        return out
