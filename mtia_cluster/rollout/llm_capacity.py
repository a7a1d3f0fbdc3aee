"""LLM per-rack capacity by exact replay: the capacity search on a window of many SLOs.

An LLM plan's per-rack capacity (service.capacity: replay) is the highest Poisson rate that
a group of `hosts` hosts of the chip (the smallest group that holds a whole replica: one host
of four TP=1 Llama 3.1 70B replicas on MTIA 400/450) serves within the plan's SLO (p99
end-to-end, and p99 TTFT / TPOT when the plan gives them), found by
`planning.capacity.capacity_over_span` (the capacity search's scenario, workload streams and
SLO judgement, Azure 2023 conversation lengths), times the groups per rack. Every rate tried
is judged on a trace spanning at least `window_s` (default 10 x the p99 SLO, as the rollout's
moment replays; never below 5 x: a shorter window hides the backlog of an overloaded
replica). The bisection stops when the bracket [highest passing, lowest failing] is narrower
than `rel_tol`; the figure is the highest passing rate, its uncertainty the bracket (reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.rollout_plan import Service
from mtia_cluster.errors import UserError
from mtia_cluster.planning.capacity import capacity_over_span, platform_for, replica_tp
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.workloads import LLMModel

MIN_WINDOW_SLOS = 5.0  # shortest judged window, in p99 SLOs
DEFAULT_WINDOW_SLOS = 10.0
GUESS_OF_OFFLINE = 0.6  # first guess: this fraction of the cost model's all-busy throughput


@dataclass(frozen=True)
class CapacitySearch:
    """How the LLM replay capacity is searched (service.capacity_search)."""

    window_s: float | None = None  # None: DEFAULT_WINDOW_SLOS x the p99 SLO
    rel_tol: float = 0.05
    hosts: int = 1  # hosts per replayed group (raised to hold one whole replica)
    seed: int = 0

    def key(self, slo_p99_s: float) -> tuple[float, float, int, int]:
        return (self.window(slo_p99_s), self.rel_tol, self.hosts, self.seed)

    def window(self, slo_p99_s: float) -> float:
        return DEFAULT_WINDOW_SLOS * slo_p99_s if self.window_s is None else self.window_s


DEFAULT_SEARCH = CapacitySearch()


@dataclass(frozen=True)
class UnitCapacity:
    """One platform unit of `chip` as measured by the search (per unit, before x units)."""

    requests_per_s: float
    lowest_failing_rps: float  # inf: no failing rate seen (the figure is a lower bound)
    power_w: float
    group_hosts: int
    window_s: float
    replays: int


def parse_llm_slo(
    svc: Service, slo_p99_s: float, llm: bool, file: str | Path | None
) -> tuple[float | None, float | None, CapacitySearch]:
    """service.ttft_p99_ms, service.tpot_p99_ms and service.capacity_search (validated by the
    plan model; LLM plans only, the search window at least MIN_WINDOW_SLOS x the p99 SLO)."""
    ttft = None if svc.ttft_p99_ms is None else svc.ttft_p99_ms / 1e3
    tpot = None if svc.tpot_p99_ms is None else svc.tpot_p99_ms / 1e3
    cs = svc.capacity_search
    if not llm:
        for key, value in (("ttft_p99_ms", ttft), ("tpot_p99_ms", tpot), ("capacity_search", cs)):
            if value is not None:
                shown = getattr(svc, key)
                shown = shown.model_dump(exclude_unset=True) if key == "capacity_search" else shown
                raise UserError(
                    "applies to LLM services only", file=file, field=f"service.{key}", value=shown
                )
        return None, None, CapacitySearch()
    if cs is None:
        return ttft, tpot, CapacitySearch()
    if cs.window_s is not None and cs.window_s < MIN_WINDOW_SLOS * slo_p99_s:
        raise UserError(
            f"must be >= {MIN_WINDOW_SLOS:g} x service.slo_p99_ms (s)",
            file=file,
            field="service.capacity_search.window_s",
            value=cs.window_s,
        )
    hosts = 1 if cs.hosts is None else cs.hosts
    return ttft, tpot, CapacitySearch(cs.window_s, cs.rel_tol, hosts, cs.seed)


def group_hosts(cat: Catalog, model: LLMModel, platform: str, hosts: int) -> int:
    """Hosts per replayed group: `hosts`, raised to hold one replica, within one unit."""
    p = cat.platform(platform)
    tp = replica_tp(cat, model, platform)
    need = max(hosts, math.ceil(tp / p.accelerators_per_host))
    if need > p.hosts:
        raise UserError(
            f"a replayed group of {need} hosts exceeds one {platform} ({p.hosts} hosts)",
            field="service.capacity_search.hosts",
            value=hosts,
        )
    return need


def llm_unit_capacity(
    cat: Catalog,
    model: LLMModel,
    chip: str,
    slo: ServiceSLO,
    search: CapacitySearch,
    offline_rps_per_unit: float,
) -> UnitCapacity:
    """Replay capacity of one platform unit of `chip` (see module doc)."""
    assert slo.latency_ns is not None
    platform = platform_for(cat, chip)
    units_hosts = cat.platform(platform).hosts
    k = group_hosts(cat, model, platform, search.hosts)
    window_s = search.window(slo.latency_ns / 1e9)
    res, s = capacity_over_span(
        model.name,
        chip,
        slo,
        span_s=window_s,
        guess_rps=GUESS_OF_OFFLINE * offline_rps_per_unit * k / units_hosts,
        rel_tol=search.rel_tol,
        hosts=k,
        seed=search.seed,
        catalog=cat,
    )
    scale = units_hosts / k  # groups per platform unit
    return UnitCapacity(
        requests_per_s=s.best_rate * scale,
        lowest_failing_rps=s.lowest_failing * scale,
        power_w=(res.accelerator_power_w + res.host_power_w) * scale,
        group_hosts=k,
        window_s=window_s,
        replays=res.replays,
    )
