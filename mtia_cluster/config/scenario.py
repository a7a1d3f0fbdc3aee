"""Scenario files: regions, pools of accelerators serving services, router, SLOs.

Shape (documented with examples in docs/engine.md)::

    name: rr-small
    seed: 1
    report_interval_ms: 5          # window length (router load reports)
    metrics_interval_ms: 1000      # device/region interval metrics; multiple of the above
    router: {policy: least_outstanding}
    regions:
      - name: us-east
        weight: 1.0                # share of trace requests without a region column
        pools:
          - service: feed-ranking
            model: lc1             # catalog model (rr, llm or synthetic)
            platform: mtia-2i-rack
            racks: 1               # or hosts: N, or accelerators: N
            batching: {max_items: 1024, max_wait_us: 500}      # R&R
            accelerators_per_replica: 1                        # synthetic/LLM cell size
            service_time_multiplier: 1.0   # R&R/synthetic: x every service time (a model
                                           # version's performance delta or regression)
            error_rate: 0.0                # seeded fraction of served requests marked failed
            # LLM: tp, pp, max_num_batched_tokens, ... (read by engine/llm/factory.py)
    events:                        # optional fleet events inside the replay (config/events.py)
      - {at_s: 30, kind: fail, region: us-east, hosts: [0], on_failure: retry}
    slo:
      feed-ranking: {p99_ms: 50}
      chat: {ttft_p99_ms: 2000, tpot_p99_ms: 100}

Every mistake is a UserError naming the file, the dotted field and the value, raised here
(before any simulation starts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config import Fields, apply_overrides, load_yaml
from mtia_cluster.config.events import EventSpec, FailureSpec, parse_events, parse_failures
from mtia_cluster.config.limits import check_scenario
from mtia_cluster.errors import UserError
from mtia_cluster.slo import ServiceSLO, slo_from_targets

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
    raw: dict[str, Any]
    field_prefix: str
    service_time_multiplier: float = 1.0  # x accelerator occupancy per batch (R&R/synthetic)
    error_rate: float = 0.0  # fraction of served requests returned as failed (injected)


@dataclass(frozen=True)
class RegionSpec:
    name: str
    weight: float
    pools: tuple[PoolSpec, ...]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario; `raw` is the resolved mapping (after --set overrides)."""

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

    @property
    def services(self) -> list[str]:
        """Service names in first-seen order (the simulation's service indices)."""
        out: list[str] = []
        for r in self.regions:
            for p in r.pools:
                if p.service not in out:
                    out.append(p.service)
        return out


def load_scenario(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    catalog: Any = None,
) -> Scenario:
    """Read, override and validate a scenario file."""
    data = apply_overrides(load_yaml(path), list(overrides))
    if seed is not None:
        data["seed"] = seed
    return parse_scenario(data, str(path), catalog)


def parse_scenario(data: dict[str, Any], file: str | None = None, catalog: Any = None) -> Scenario:
    """Validate a scenario mapping against the catalog."""
    cat = catalog if catalog is not None else load_catalog()
    f = Fields(data, file)
    report_ms = f.number("report_interval_ms", 5.0, positive=True)
    report_ns = round(report_ms * 1e6)
    if report_ns < 1:
        raise f.error("report_interval_ms", "must be at least 1 ns", report_ms)
    metrics_ms = f.number("metrics_interval_ms", 1000.0, positive=True)
    metrics_ns = round(metrics_ms * 1e6)
    if metrics_ns % report_ns:
        raise f.error("metrics_interval_ms", "must be a multiple of report_interval_ms", metrics_ms)
    router = f.sub("router", {})
    policy = router.str("policy", "least_outstanding", choices=POLICIES)
    weights = (
        router.number("affinity_weight", AFFINITY_WEIGHT, min_value=0.0),
        router.number("load_weight", LOAD_WEIGHT, min_value=0.0),
    )
    regions = f.list("regions")
    if not regions:
        raise f.error("regions", "needs at least one region", regions)
    parsed = tuple(_region(Fields(r, file, f"regions.{i}"), cat) for i, r in enumerate(regions))
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        raise f.error("regions", "region names must be unique", names)
    scenario = Scenario(
        name=f.str("name", Path(file).stem if file else "scenario"),
        seed=f.int("seed", 0),
        report_interval_ns=report_ns,
        metrics_interval_ns=metrics_ns,
        policy=policy,
        regions=parsed,
        slo=_slo(f, parsed),
        file=file,
        raw=data,
        events=parse_events(f, names),
        failures=parse_failures(f, names),
        router_weights=weights,
    )
    check_scenario(scenario)  # sizes (config/limits.py), before anything is built
    return scenario


def _region(f: Fields, cat: Any) -> RegionSpec:
    pools = f.list("pools")
    if not pools:
        raise f.error("pools", "needs at least one pool", pools)
    return RegionSpec(
        name=f.str("name"),
        weight=f.number("weight", 1.0),
        pools=tuple(
            _pool(Fields(p, f.file, f.path(f"pools.{i}")), cat) for i, p in enumerate(pools)
        ),
    )


def _catalog_item(f: Fields, key: str, lookup: Any) -> Any:
    name = f.str(key)
    try:
        return lookup(name)
    except UserError as exc:
        raise UserError(exc.reason, file=f.file, field=f.path(key), value=name) from None


def _pool(f: Fields, cat: Any) -> PoolSpec:
    model = _catalog_item(f, "model", cat.model)
    platform = _catalog_item(f, "platform", cat.platform)
    host = cat.host(platform.host)
    counts = [k for k in ("racks", "hosts", "accelerators") if f.has(k)]
    if len(counts) != 1:
        raise f.error("racks", "give exactly one of racks, hosts, accelerators", counts or None)
    n = f.int(counts[0], positive=True)
    per_host = platform.accelerators_per_host
    accelerators = {
        "racks": n * platform.hosts * per_host,
        "hosts": n * per_host,
        "accelerators": n,
    }[counts[0]]
    kind = model.kind
    max_items, max_wait_ns = 1, 0
    if kind == "rr":
        if accelerators % per_host:
            raise f.error(counts[0], f"R&R pools use whole hosts of {per_host} accelerators", n)
        b = f.sub("batching", {})
        max_items = b.int("max_items", 1024, positive=True)
        max_wait_ns = round(b.number("max_wait_us", 1000.0) * 1e3)
        group = model.accelerators
        if host.accelerators_per_socket % group:
            raise f.error(
                "model",
                f"shard group of {group} does not divide a socket's "
                f"{host.accelerators_per_socket} accelerators",
                model.name,
            )
        size = per_host
    else:
        default = f.int("tp", 1, positive=True) * f.int("pp", 1, positive=True)
        size = f.int("accelerators_per_replica", default, positive=True)
        if accelerators % size:
            raise f.error(
                "accelerators_per_replica",
                f"must divide the pool's {accelerators} accelerators",
                size,
            )
    multiplier = f.number("service_time_multiplier", 1.0, positive=True)
    if kind == "llm" and multiplier != 1.0:
        raise f.error("service_time_multiplier", "not supported for LLM pools", multiplier)
    return PoolSpec(
        service=f.str("service"),
        model=model.name,
        kind=kind,
        platform=platform.name,
        accelerators=accelerators,
        replica_size=size,
        max_items=max_items,
        max_wait_ns=max_wait_ns,
        raw=dict(f.data),
        field_prefix=f.prefix,
        service_time_multiplier=multiplier,
        error_rate=f.number("error_rate", 0.0, max_value=1.0),
    )


def _slo(f: Fields, regions: tuple[RegionSpec, ...]) -> dict[str, ServiceSLO]:
    """`slo:` as ServiceSLOs (ms -> ns); the kind is the serving pools' (LLM or R&R)."""
    kinds = {p.service: ("llm" if p.kind == "llm" else "rr") for r in regions for p in r.pools}
    s = f.sub("slo", {})
    out: dict[str, ServiceSLO] = {}
    for service in s.data:
        if service not in kinds:
            raise s.error(str(service), "SLO for a service no pool serves", service)
        entry = s.sub(str(service))
        targets = {}
        for key in entry.data:
            if key not in ("p99_ms", "ttft_p99_ms", "tpot_p99_ms"):
                raise entry.error(
                    str(key), "unknown SLO target (p99_ms, ttft_p99_ms, tpot_p99_ms)", key
                )
            targets[str(key)] = entry.number(str(key), positive=True)
        slo = slo_from_targets(targets, f"slo.{service}")
        out[str(service)] = slo.with_kind(kinds[str(service)])
    return out
