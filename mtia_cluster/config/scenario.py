"""Scenario files: regions, pools of accelerators serving services, router, SLOs.

Shape (documented with examples in docs/engine.md; the typed models are in
``config/models.py``, ``mtia-cluster schema scenario`` prints them as JSON Schema)::

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
            model: lc1             # catalog model (rr, llm or synthetic): picks the pool kind
            platform: mtia-2i-rack
            racks: 1               # or hosts: N, or accelerators: N
            batching: {max_items: 1024, max_wait_us: 500}      # R&R only
            accelerators_per_replica: 1                        # synthetic/LLM cell size
            service_time_multiplier: 1.0   # R&R/synthetic: x every service time (a model
                                           # version's performance delta or regression)
            error_rate: 0.0                # seeded fraction of served requests marked failed
            embedding_hosts: 1             # R&R: hosts sharding the embedding tables (remote
                                           # lookups over the fabric, docs/network.md)
            # LLM only: tp, pp, dtype, max_num_batched_tokens, max_num_seqs, block_size,
            # prefix_caching, disaggregation (LLMSettings below)
    events:                        # optional fleet events inside the replay (config/events.py)
      - {at_s: 30, kind: fail, region: us-east, hosts: [0], on_failure: retry}
    slo:
      feed-ranking: {p99_ms: 50}
      chat: {ttft_p99_ms: 2000, tpot_p99_ms: 100}
    verdict: {min_duration_s: 0}   # optional: options of the verdict (default LoadGen Server)

Validation happens once, here, before any simulation starts: the models refuse unknown keys,
wrong types and out-of-range values; this module adds what needs the catalog (models,
platforms, whole hosts, shard groups, replica sizes, tp x pp) and cross-references (region
and service names). Every mistake is one UserError naming file, field path and value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.config.events import event_specs, failure_specs
from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.models import (
    Autoscaling,
    Disaggregation,
    LLMPool,
    RRPool,
    ScenarioFile,
    VerdictOptions,
    pool_kinds,
)
from mtia_cluster.config.network import resolve_global_routing
from mtia_cluster.config.overrides import apply_overrides
from mtia_cluster.config.scenario_limits import check_scenario
from mtia_cluster.config.scenario_types import LLMSettings, PDShape, PoolSpec, RegionSpec, Scenario
from mtia_cluster.config.schema import validate
from mtia_cluster.cost.data import load_cost_data, region_grid
from mtia_cluster.errors import UserError, did_you_mean
from mtia_cluster.perf.llm import check_tp, llm_iteration_model
from mtia_cluster.slo import ServiceSLO, slo_from_targets
from mtia_cluster.units import NS_PER_S


def load_scenario(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    catalog: Catalog | None = None,
) -> Scenario:
    """Read, override (paths checked against the scenario model) and validate a file."""
    data = apply_overrides(load_yaml(path), list(overrides), ScenarioFile)
    if seed is not None:
        data["seed"] = seed
    return parse_scenario(data, str(path), catalog)


def validate_scenario_file(data: dict[str, Any], file: str | None, cat: Catalog) -> ScenarioFile:
    """The typed document (shape, types, ranges; pool kinds from the catalog's models)."""

    def kind(name: str) -> str | None:
        model = cat.models.get(name)
        return None if model is None else model.kind

    with pool_kinds(kind):
        return validate(ScenarioFile, data, file)


def parse_scenario(
    data: dict[str, Any], file: str | None = None, catalog: Catalog | None = None
) -> Scenario:
    """Validate a scenario mapping against the models and the catalog."""
    cat = catalog if catalog is not None else load_catalog()
    return scenario_from_model(validate_scenario_file(data, file, cat), file, cat, data)


def scenario_from_model(
    doc: ScenarioFile, file: str | None, cat: Catalog, raw: dict[str, Any]
) -> Scenario:
    """Resolve a typed scenario document against the catalog: what `parse_scenario` does
    after validation, and where builders that make the typed document themselves start
    (planning/capacity.py `one_region_scenario`). `raw`: the document as a mapping."""
    report_ns = round(doc.report_interval_ms * 1e6)
    if report_ns < 1:
        raise UserError(
            "must be at least 1 ns",
            file=file,
            field="report_interval_ms",
            value=doc.report_interval_ms,
        )
    metrics_ns = round(doc.metrics_interval_ms * 1e6)
    if metrics_ns % report_ns:
        raise UserError(
            "must be a multiple of report_interval_ms",
            file=file,
            field="metrics_interval_ms",
            value=doc.metrics_interval_ms,
        )
    regions = tuple(
        RegionSpec(
            name=r.name,
            weight=r.weight,
            pools=tuple(
                _pool(p, cat, file, f"regions[{i}].pools[{j}]") for j, p in enumerate(r.pools)
            ),
            grid=region_grid(load_cost_data(), r.name, r.energy, file, f"regions[{i}].energy"),
        )
        for i, r in enumerate(doc.regions)
    )
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise UserError("region names must be unique", file=file, field="regions", value=names)
    services = list(dict.fromkeys(p.service for r in regions for p in r.pools))
    scenario = Scenario(
        name=doc.name if doc.name is not None else (Path(file).stem if file else "scenario"),
        seed=doc.seed,
        report_interval_ns=report_ns,
        metrics_interval_ns=metrics_ns,
        policy=doc.router.policy,
        regions=regions,
        slo=_slo(doc, regions, file),
        file=file,
        raw=raw,
        events=event_specs(doc.events, names, services, file),
        failures=failure_specs(doc.failures, names, file),
        router_weights=(doc.router.affinity_weight, doc.router.load_weight),
        global_routing=resolve_global_routing(doc.global_routing, names, file),
        autoscaling=_autoscaling(doc, regions, file),
        fabric=doc.fabric,
        verdict=verdict_rule_args(doc.verdict),
    )
    check_scenario(scenario)  # sizes (config/scenario_limits.py), before anything is built
    return scenario


def _autoscaling(
    doc: ScenarioFile, regions: tuple[RegionSpec, ...], file: str | None
) -> dict[str, Autoscaling]:
    """`autoscaling:` checked against the fleet: a served service, and no more replicas
    (max or initial) than a region serving it has cells."""
    services = list(dict.fromkeys(p.service for r in regions for p in r.pools))
    for name, policy in doc.autoscaling.items():
        if name not in services:
            raise UserError(
                "unknown service" + did_you_mean(name, services),
                file=file,
                field=f"autoscaling.{name}",
                value=name,
            )
        for r in regions:
            cells = sum(p.accelerators // p.replica_size for p in r.pools if p.service == name)
            for key in ("max_replicas", "initial_replicas", "min_replicas"):
                wanted = getattr(policy, key)
                if cells and wanted is not None and wanted > cells:
                    raise UserError(
                        f"region {r.name} has {cells} replicas of {name}",
                        file=file,
                        field=f"autoscaling.{name}.{key}",
                        value=wanted,
                    )
    return dict(doc.autoscaling)


def verdict_rule_args(options: VerdictOptions) -> dict[str, Any]:
    """`verdict:` as keyword arguments of results.verdict.VerdictRules (only the options
    set, so that the defaults live in one place, VerdictRules)."""
    out: dict[str, Any] = options.model_dump(exclude_none=True)
    if "min_duration_s" in out:
        out["min_duration_ns"] = round(out.pop("min_duration_s") * NS_PER_S)
    return out


def _slo(
    doc: ScenarioFile, regions: tuple[RegionSpec, ...], file: str | None
) -> dict[str, ServiceSLO]:
    """`slo:` as ServiceSLOs (ms -> ns); the kind is the serving pools' (LLM or R&R)."""
    kinds = {p.service: ("llm" if p.kind == "llm" else "rr") for r in regions for p in r.pools}
    out: dict[str, ServiceSLO] = {}
    for service, targets in doc.slo.items():
        if service not in kinds:
            raise UserError(
                "SLO for a service no pool serves" + did_you_mean(service, list(kinds)),
                file=file,
                field=f"slo.{service}",
                value=service,
            )
        slo = slo_from_targets(targets.model_dump(exclude_none=True), f"slo.{service}", file)
        out[service] = slo.with_kind(kinds[service])
    return out


def _catalog_item(lookup: Any, name: str, file: str | None, field: str, known: Any) -> Any:
    try:
        return lookup(name)
    except UserError:
        what = field.rpartition(".")[2]
        raise UserError(
            f"unknown {what}" + did_you_mean(name, sorted(known), "known:"),
            file=file,
            field=field,
            value=name,
        ) from None


def _pool(p: Any, cat: Catalog, file: str | None, prefix: str) -> PoolSpec:
    """A validated pool model resolved against the catalog."""
    model = _catalog_item(cat.model, p.model, file, f"{prefix}.model", cat.models)
    platform = _catalog_item(cat.platform, p.platform, file, f"{prefix}.platform", cat.platforms)
    host = cat.host(platform.host)

    def error(key: str, message: str, value: Any) -> UserError:
        return UserError(message, file=file, field=f"{prefix}.{key}", value=value, has_value=True)

    counts = [k for k in ("racks", "hosts", "accelerators") if getattr(p, k) is not None]
    if len(counts) != 1:
        raise error("racks", "give exactly one of racks, hosts, accelerators", counts or None)
    n = getattr(p, counts[0])
    per_host = platform.accelerators_per_host
    accelerators = {
        "racks": n * platform.hosts * per_host,
        "hosts": n * per_host,
        "accelerators": n,
    }[counts[0]]
    max_items, max_wait_ns, llm = 1, 0, None
    if isinstance(p, RRPool):
        if accelerators % per_host:
            raise error(counts[0], f"R&R pools use whole hosts of {per_host} accelerators", n)
        _check_rr(p, accelerators // per_host, host, model, error)
        max_items = p.batching.max_items
        max_wait_ns = _us_to_ns(p.batching.max_wait_us)
        size = per_host
    elif isinstance(p, LLMPool):
        size = _llm_replica_size(p, error)
        llm = _llm_settings(p, size, model, cat.chip(platform.chip), error)
    else:
        size = p.accelerators_per_replica
    if not isinstance(p, RRPool) and accelerators % size:
        raise error(
            "accelerators_per_replica", f"must divide the pool's {accelerators} accelerators", size
        )
    _check_fits(cat.chip(platform.chip), model, llm, error)
    return PoolSpec(
        service=p.service,
        model=model.name,
        kind=model.kind,
        platform=platform.name,
        accelerators=accelerators,
        replica_size=size,
        max_items=max_items,
        max_wait_ns=max_wait_ns,
        field_prefix=prefix,
        count_key=counts[0],
        service_time_multiplier=getattr(p, "service_time_multiplier", 1.0),
        error_rate=p.error_rate,
        embedding_hosts=getattr(p, "embedding_hosts", 1),
        llm=llm,
    )


def _us_to_ns(us: float) -> int:
    """Microseconds to integer ns; exact for a finite value whose ns overflow a float (1e306
    us: refused by the trace_span_s limit, check_scenario, rather than an OverflowError)."""
    ns = us * 1e3
    return round(ns) if math.isfinite(ns) else int(us) * 1000


def _check_rr(p: RRPool, hosts: int, host: Any, model: Any, error: Any) -> None:
    """An R&R pool's shard group fits a socket; its embedding groups split its hosts."""
    if host.accelerators_per_socket % model.accelerators:
        raise error(
            "model",
            f"shard group of {model.accelerators} does not divide a socket's "
            f"{host.accelerators_per_socket} accelerators",
            model.name,
        )
    if hosts % p.embedding_hosts:
        raise error("embedding_hosts", f"must divide the pool's {hosts} hosts", p.embedding_hosts)


def _llm_settings(p: LLMPool, size: int, model: Any, chip: Any, error: Any) -> LLMSettings:
    """One default for tp (the replica over pp), checked against the replica and the chip."""
    if p.max_num_batched_tokens < p.max_num_seqs:
        raise error(
            "max_num_batched_tokens",
            f"must be >= max_num_seqs ({p.max_num_seqs}) so that every running request can "
            "decode in each iteration",
            p.max_num_batched_tokens,
        )
    dtype = p.dtype or model.dtype
    if dtype not in chip.gemm_dense_flops and dtype not in chip.simd_flops:
        raise error("dtype", f"chip {chip.name} has no {dtype} compute", dtype)
    tp, pp, shape, link = p.tp, p.pp, None, None
    d = p.disaggregation
    if d is not None:  # tp is each instance's own (the prefill instances')
        for key in ("tp", "pp", "ep"):
            if key in p.model_fields_set:
                raise error(key, "does not apply to a disaggregated replica", getattr(p, key))
        shape = _pd_shape(d, size, error)
        tp, pp = shape.prefill_tp, 1
        link = d.link
    else:
        _check_ep(p, model, error)
        tp = tp if tp is not None else max(1, size // (pp * p.ep))
        if tp * pp * p.ep != size:
            what = "tp x ep x pp" if p.ep > 1 else "tp x pp"
            raise error("tp", f"{what} must equal the replica's {size} accelerators", tp)
    _check_tp(model, shape, tp, error)
    return LLMSettings(
        tp=tp,
        pp=pp,
        dtype=dtype,
        max_num_batched_tokens=p.max_num_batched_tokens,
        max_num_seqs=p.max_num_seqs,
        block_size=p.block_size,
        prefix_caching=p.prefix_caching,
        pd=shape,
        kv_link=link,
        ep=p.ep,
        capacity_policy=p.capacity_policy,
        max_tokens=p.max_tokens,
    )


def _check_tp(model: Any, shape: PDShape | None, tp: int, error: Any) -> None:
    """Each instance's tp shards the model's attention heads evenly (perf/llm.check_tp)."""
    checks = [("tp", tp)]
    if shape is not None:
        checks = [
            ("disaggregation.prefill.tp", shape.prefill_tp),
            ("disaggregation.decode.tp", shape.decode_tp),
        ]
    for field, value in checks:
        why = check_tp(model, value)
        if why is not None:
            raise error(field, why, value)


def _check_fits(chip: Any, model: Any, s: LLMSettings | None, error: Any) -> None:
    """The weights fit each instance's memory and tp its chip's scale-up domain (the cost
    model's own checks, perf/llm.llm_iteration_model), refused here with the pool's field
    rather than as a bare `tp` when cells are built."""
    if s is None:
        return
    checks = [("tp", s.tp, s.pp, s.ep)]
    if s.pd is not None:  # each instance alone (engine/llm/factory.py builds them so)
        checks = [
            ("disaggregation.prefill.tp", s.pd.prefill_tp, 1, 1),
            ("disaggregation.decode.tp", s.pd.decode_tp, 1, 1),
        ]
    for field, t, p_, e in checks:
        try:
            llm_iteration_model(chip, model, tp=t, pp=p_, dtype=s.dtype, ep=e)
        except UserError as exc:
            if exc.field != "tp":
                raise
            raise error(field, exc.reason, t) from None


def _check_ep(p: LLMPool, model: Any, error: Any) -> None:
    """ep > 1 needs a MoE model whose experts split evenly (perf/moe.py)."""
    if p.ep == 1:
        return
    if model.moe is None:
        raise error("ep", f"model {model.name} has no experts to shard", p.ep)
    if model.moe.experts % p.ep:
        raise error("ep", f"must divide the model's {model.moe.experts} experts", p.ep)


def _llm_replica_size(p: LLMPool, error: Any) -> int:
    """Accelerators per LLM replica: given, or the disaggregated pools', or tp x pp."""
    d = p.disaggregation
    if d is None or d.prefill is None or d.decode is None:
        return p.accelerators_per_replica or (p.tp or 1) * p.pp * p.ep
    pools = d.prefill.instances * d.prefill.tp + d.decode.instances * d.decode.tp
    if p.accelerators_per_replica not in (None, pools):
        raise error(
            "accelerators_per_replica",
            f"must equal the prefill and decode pools' {pools} accelerators",
            p.accelerators_per_replica,
        )
    return pools


def _pd_shape(d: Disaggregation, size: int, error: Any) -> PDShape:
    """The replica's prefill and decode pools (the 1:1 shorthand resolved)."""
    if d.prefill is not None and d.decode is not None:
        return PDShape(d.prefill.instances, d.prefill.tp, d.decode.instances, d.decode.tp)
    n_pre = d.prefill_accelerators or max(1, size // 2)
    if n_pre >= size:
        raise error(
            "disaggregation.prefill_accelerators",
            f"must leave decode accelerators of {size}",
            n_pre,
        )
    return PDShape(1, n_pre, 1, size - n_pre)
