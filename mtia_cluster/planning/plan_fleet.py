"""A plan's fleets as scenarios, their peak-demand traces, and the confirming replay.

A fleet assigns each (service, region) a candidate and a number of platform units. Its
scenario holds one pool per (region, service) with `units x unit_hosts` hosts, the plan's
SLOs, and a `fail` event at t = 0 that takes the first `spare_units` units of every pool out
(N-1 by default): the fleet must meet the SLO without them; its `verdict:` is the plan's
rules (`PLAN_VERDICT`), which `confirm` and a `replay` of the document both judge by. The
trace is Poisson arrivals at each region's peak rate for each service, with the capacity
search's request sizes, drawn from the stream `(PLAN_WORKLOAD, service, region)` of the
plan's seed: the same rows whether one (service, region) is replayed alone or the whole
fleet at once.

`confirm(job)` is the one replay of one (service, region): run as a Ray task (or in
process, the same function) by `plan_search.py`. Pools of different services share no
accelerator and each (region, service) has its own router, so replaying them one by one
replays the fleet's requests on the fleet's pools; only the routers' and cells' random
streams differ (they are numbered by position in the scenario). `tests/planning/
test_plan.py` replays the whole written fleet with `replay` and checks every group is VALID.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.models import (
    Event,
    LLMPool,
    Region,
    RRPool,
    ScenarioFile,
    SyntheticPool,
    VerdictOptions,
    pool_kinds,
)
from mtia_cluster.config.scenario import Scenario, scenario_from_model
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.planning.capacity import LLM_LENGTHS, RR_SIZES
from mtia_cluster.planning.plan_candidates import Candidate, Sizes, pool_of
from mtia_cluster.planning.plan_file import Plan
from mtia_cluster.results.verdict import SEARCH_RULES, VerdictRules
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes

Choice = tuple[Candidate, int]  # a candidate and its platform units


def verdict_options(rules: VerdictRules) -> VerdictOptions:
    """`rules` as a scenario's `verdict:` section (config/scenario.py reads it back)."""
    return VerdictOptions(
        min_duration_s=rules.min_duration_ns / 1e9,
        early_stopping=rules.early_stopping,
        confidence=rules.confidence,
        all_ok=rules.all_ok,
    )


# A plan judges a fleet as `capacity` judges a rate (a replay of `span_s` of peak traffic:
# no LoadGen minimum duration or early stopping, every request ok); every fleet document it
# writes carries these rules, so the written winner replays under the same verdict.
PLAN_VERDICT = verdict_options(SEARCH_RULES)


@dataclass(frozen=True)
class ConfirmJob:
    """One replay: a one-region, one-service scenario and its peak traffic."""

    scenario: Scenario
    service: str
    region: str
    slo: ServiceSLO
    rate_rps: float
    requests: int
    seed: int
    key: tuple[int, int]  # (service index, region index) of the plan: the trace stream


def mean_sizes(seed: int) -> Sizes:
    """Mean request sizes of the plan's workload (a large sample of its distributions)."""
    rng = entity_rng(seed, StreamKind.PLAN_WORKLOAD)
    inp, out = sample_lengths(rng, LLM_LENGTHS, 50_000)
    items = sample_sizes(rng, RR_SIZES, 50_000)
    return Sizes(float(items.mean()), float(inp.mean()), float(out.mean()))


def peak_requests(
    seed: int, key: tuple[int, int], kind: str, rate: float, n: int
) -> dict[str, np.ndarray]:
    """`n` Poisson arrivals at `rate` and their sizes, from the (service, region) stream."""
    rng = entity_rng(seed, StreamKind.PLAN_WORKLOAD, *key)
    arrival = np.floor(np.cumsum(rng.exponential(1.0, n)) / rate * 1e9).astype(np.int64)
    if kind == "rr":
        return {"arrival_ns": arrival, "items": sample_sizes(rng, RR_SIZES, n)}
    inp, out = sample_lengths(rng, LLM_LENGTHS, n)
    return {"arrival_ns": arrival, "input_tokens": inp, "output_tokens": out}


def request_count(plan: Plan, rate: float) -> int:
    """Requests of one confirming replay: `span_s` at `rate`, at most `max_requests`."""
    opts = plan.doc.search
    return max(1, min(opts.max_requests, round(rate * opts.span_s)))


def fleet_document(
    cat: Catalog, plan: Plan, fleet: Mapping[tuple[str, str], Choice], name: str
) -> ScenarioFile:
    """The scenario document of `fleet` ((service, region) -> (candidate, units)), with the
    N-k fail events, the plan's SLOs of the services it holds and the plan's verdict rules
    (`PLAN_VERDICT`): `confirm` judges by the document's rules, and so does a `replay` of it."""
    with pool_kinds(lambda m: cat.model(m).kind):  # the pool union reads model kinds
        regions, events = _regions(cat, plan, fleet)
        slo = {s.name: s.slo for s in plan.doc.services if any(k[0] == s.name for k in fleet)}
        return ScenarioFile(
            name=name,
            seed=plan.doc.seed,
            metrics_interval_ms=1000.0,
            regions=regions,
            events=events,
            slo=slo,
            verdict=PLAN_VERDICT,
        )


def _regions(
    cat: Catalog, plan: Plan, fleet: Mapping[tuple[str, str], Choice]
) -> tuple[list[Region], list[Event]]:
    """The fleet's regions (pools in the plan's service order) and its fail events (an
    event naming a service numbers the hosts of that service's pools in the region from 0,
    engine/events.py `_hit`)."""
    models = {s.name: s.model for s in plan.doc.services}
    spare = plan.doc.search.spare_units
    regions: list[Region] = []
    events: list[Event] = []
    for r in plan.doc.regions:
        pools: list[RRPool | LLMPool | SyntheticPool] = []
        for s in plan.doc.services:
            if (s.name, r.name) not in fleet:
                continue
            cand, units = fleet[(s.name, r.name)]
            pools.append(pool_of(cat, cand, models[s.name], units))
            down = list(range(min(spare, units - 1) * cand.unit_hosts))
            if down:
                events.append(
                    Event(at_s=0.0, kind="fail", region=r.name, service=s.name, hosts=down)
                )
        if pools:
            regions.append(Region(name=r.name, pools=pools, energy=r.energy))
    return regions, events


def fleet_scenario(cat: Catalog, doc: ScenarioFile) -> Scenario:
    """`doc` resolved against the catalog (the path every scenario file takes)."""
    with pool_kinds(lambda m: cat.model(m).kind):
        raw = doc.model_dump(exclude_unset=True, exclude_none=True)
    return scenario_from_model(doc, None, cat, raw)


def confirm(job: ConfirmJob) -> dict[str, Any]:
    """Replay `job` and judge it with the one verdict under its scenario's rules (the
    plan's): the service's row of the summary (p99s, energy, cost of the run) and whether it
    met the SLO."""
    from mtia_cluster.engine.simulation import Simulation
    from mtia_cluster.results.run import run_folded, summarize

    cols = peak_requests(job.seed, job.key, job.slo.kind, job.rate_rps, job.requests)
    region = [r.name for r in job.scenario.regions].index(job.region)
    service = job.scenario.services.index(job.service)
    trace = make_requests(cols.pop("arrival_ns"), service=service, region=region, **cols)
    judged = summarize(  # the scenario's verdict rules: PLAN_VERDICT (fleet_document)
        run_folded(Simulation(job.scenario), trace),
        rules=VerdictRules(**job.scenario.verdict),
        slos={job.service: job.slo},
    )
    row = next(r for r in judged.summary["services"] if r["service"] == job.service)
    return {
        "passed": all(v == "VALID" for v in judged.verdicts.values()),
        "slo_ratio": slo_ratio(row, job.slo),
        "p99_ms": {m: _p99_ms(row, m) for m in ("latency", "ttft", "tpot")},
        "utilization": row.get("utilization"),
        "requests": int(row["offered"]),
        "facility_power_w": row.get("facility_power_w"),
    }


def _p99_ms(row: Mapping[str, Any], metric: str) -> float | None:
    stats = row.get(f"{metric}_ns") or {}
    p99 = stats.get("p99")
    return None if p99 is None else float(p99) / 1e6


def slo_ratio(row: Mapping[str, Any], slo: ServiceSLO) -> float:
    """The worst p99 over its bound among the SLO's bounded metrics (<= 1: within it)."""
    bounds = {"latency": slo.latency_ns, "ttft": slo.ttft_ns, "tpot": slo.tpot_ns}
    ratios = [
        float((row.get(f"{m}_ns") or {}).get("p99", np.inf)) / b
        for m, b in bounds.items()
        if b is not None
    ]
    return max(ratios)


def fleet_trace(plan: Plan, keys: Mapping[tuple[str, str], float]) -> pa.Table:
    """The peak trace of a whole fleet ((service, region) -> rate), as a trace table that
    `mtia-cluster replay` reads: the same rows as each (service, region)'s confirming replay."""
    names = [s.name for s in plan.doc.services]
    regions = [r.name for r in plan.doc.regions]
    parts: list[RequestBatch] = []
    labels: list[tuple[str, str]] = []
    for (service, region), rate in keys.items():
        kind = plan.kinds[service]
        key = (names.index(service), regions.index(region))
        cols = peak_requests(plan.doc.seed, key, kind, rate, request_count(plan, rate))
        parts.append(make_requests(cols.pop("arrival_ns"), **cols))
        labels += [(service, region)] * len(parts[-1])
    return _table(parts, labels, plan)


def _table(parts: list[RequestBatch], labels: list[tuple[str, str]], plan: Plan) -> pa.Table:
    """Rows of every part, sorted by arrival, numbered 0..n-1; counts null where unused."""
    batch = RequestBatch.concat(parts)
    order = np.argsort(batch.arrival_ns, kind="stable")
    service = np.array([s for s, _ in labels], dtype=object)[order]
    region = np.array([r for _, r in labels], dtype=object)[order]
    rr = np.array([plan.kinds[s] == "rr" for s in service], dtype=bool)
    return pa.table(
        {
            "request_id": np.arange(len(order), dtype=np.int64),
            "arrival_ns": batch.arrival_ns[order],
            "service": pa.array(service, pa.string()).dictionary_encode(),
            "region": pa.array(region, pa.string()).dictionary_encode(),
            "items": pa.array(batch.items[order], pa.int32(), mask=~rr),
            "input_tokens": pa.array(batch.input_tokens[order], pa.int32(), mask=rr),
            "output_tokens": pa.array(batch.output_tokens[order], pa.int32(), mask=rr),
        }
    )
