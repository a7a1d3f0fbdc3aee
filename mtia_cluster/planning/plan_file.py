"""The plan file (configs/plans/*.yaml, `mtia-cluster plan`) as typed models, and its loader.

A plan names regions, services with their demand per region (peak requests/s and a diurnal
peak-to-trough ratio; 1 = peak only), each service's SLO (the scenario ``slo:`` targets, read
into the one `ServiceSLO`), and the candidate space: chips x serving settings the simulator
supports (R&R: batch limit and batching wait; LLM: TP, EP for MoE models, token budget,
batch limit, P:D split). Shape, types and ranges are checked by the models (unknown keys
refused with a did-you-mean); catalog references (models, chips, cost data, settings that do
not apply to the service's kind) by :func:`load_plan`. Every problem is one line naming the
file, the field and the value, before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.limits import Limits, limit_error
from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.models import RegionEnergy, SLOTargets
from mtia_cluster.config.schema import Strict, validate
from mtia_cluster.errors import UserError
from mtia_cluster.slo import ServiceSLO, slo_from_targets

PositiveInt = Annotated[int, Field(gt=0)]
Positive = Annotated[float, Field(gt=0.0)]
Name = Annotated[str, Field(min_length=1)]
LLM_KEYS = ("tp", "ep", "max_num_batched_tokens", "max_num_seqs", "prefill_share")
RR_KEYS = ("max_items", "max_wait_us")


class Demand(Strict):
    """One service's demand in one region: the peak and the day's shape (cosine, mean 1)."""

    peak_rps: Positive
    peak_to_trough: Annotated[float, Field(ge=1.0)] = 1.0  # 1: flat at the peak


class Candidates(Strict):
    """The settings to try, each a list; every combination with every chip is a candidate.

    `prefill_share` is the P:D split of a disaggregated replica: the fraction of the
    replica's instances that prefill (0 = not disaggregated)."""

    chips: list[Name] = Field(min_length=1)
    max_items: list[PositiveInt] | None = Field(None, min_length=1)  # R&R batch limit
    max_wait_us: list[Annotated[float, Field(ge=0.0)]] | None = Field(None, min_length=1)
    tp: list[PositiveInt] | None = Field(None, min_length=1)
    ep: list[PositiveInt] | None = Field(None, min_length=1)
    max_num_batched_tokens: list[PositiveInt] | None = Field(None, min_length=1)
    max_num_seqs: list[PositiveInt] | None = Field(None, min_length=1)
    prefill_share: list[Annotated[float, Field(ge=0.0, lt=1.0)]] | None = Field(None, min_length=1)


class PlanService(Strict):
    name: Name
    model: Name
    slo: SLOTargets
    demand: dict[str, Demand] = Field(min_length=1)  # by region name
    candidates: Candidates


class PlanRegion(Strict):
    name: Name
    energy: RegionEnergy | None = None  # as a scenario region's (docs/planning.md)


class SearchOptions(Strict):
    """How hard to search (docs/planning.md, "Search")."""

    finalists: PositiveInt = 3  # per service and region, confirmed by replay
    replay_within: Annotated[float, Field(ge=1.0)] = 1.5  # x the cheapest estimate (module doc)
    trim_steps: Annotated[int, Field(ge=0)] = 2  # units a passing finalist may shed
    spare_units: Annotated[int, Field(ge=0)] = 1  # N-k margin: units failed when confirming
    target_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    latency_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    span_s: Positive = 10.0  # simulated time of each confirming replay
    max_requests: PositiveInt = 200_000  # per confirming replay (span shortened to fit)


class PlanFile(Strict):
    """A plan file (docs/planning.md, "Search")."""

    name: Name
    seed: Annotated[int, Field(ge=0)] = 0
    regions: list[PlanRegion] = Field(min_length=1)
    services: list[PlanService] = Field(min_length=1)
    search: SearchOptions = SearchOptions()


@dataclass(frozen=True)
class Plan:
    """A checked plan: the typed file, each service's SLO and kind, the file's path."""

    doc: PlanFile
    slos: dict[str, ServiceSLO]
    kinds: dict[str, str]  # service -> rr | llm
    file: str


def load_plan(path: str | Path, cat: Catalog) -> Plan:
    """Read, validate and cross-check the plan at `path` (UserError naming file and field)."""
    file = str(path)
    doc = validate(PlanFile, load_yaml(path), file)
    lim = Limits.from_env()
    if doc.search.spare_units > lim.accelerators:  # each spare unit is >= 1 accelerator
        raise limit_error(
            "spare units",
            doc.search.spare_units,
            "accelerators",
            lim.accelerators,
            file,
            "search.spare_units",
        )
    regions = [r.name for r in doc.regions]
    _unique(regions, "regions", file)
    _unique([s.name for s in doc.services], "services", file)
    slos, kinds = {}, {}
    for i, s in enumerate(doc.services):
        where = f"services[{i}]"
        kinds[s.name] = _kind(cat, s, where, file)
        targets = s.slo.model_dump(exclude_none=True)
        if not targets:
            raise UserError("needs at least one bound", file=file, field=f"{where}.slo", value={})
        slos[s.name] = slo_from_targets(targets, f"{where}.slo", file).with_kind(kinds[s.name])
        for region in s.demand:
            if region not in regions:
                raise UserError(
                    f"not a plan region ({', '.join(regions)})",
                    file=file,
                    field=f"{where}.demand",
                    value=region,
                )
        _check_candidates(cat, s, kinds[s.name], f"{where}.candidates", file)
    return Plan(doc=doc, slos=slos, kinds=kinds, file=file)


def _unique(names: list[str], field: str, file: str) -> None:
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise UserError("named twice", file=file, field=field, value=seen[0])


def _kind(cat: Catalog, s: PlanService, where: str, file: str) -> str:
    try:
        model = cat.model(s.model)
    except UserError as exc:
        raise UserError(exc.reason, file=file, field=f"{where}.model", value=s.model) from None
    if model.kind not in ("rr", "llm"):
        raise UserError(
            "plan needs an R&R or LLM model", file=file, field=f"{where}.model", value=s.model
        )
    return str(model.kind)


def _check_candidates(cat: Catalog, s: PlanService, kind: str, where: str, file: str) -> None:
    """Chips known, deployed by a platform and priced; no setting of the other kind."""
    from mtia_cluster.cost.data import load_cost_data
    from mtia_cluster.planning.capacity import platform_for

    data = load_cost_data()
    _unique(list(s.candidates.chips), f"{where}.chips", file)
    for key in RR_KEYS + LLM_KEYS:
        _unique(list(getattr(s.candidates, key) or ()), f"{where}.{key}", file)
    for j, chip in enumerate(s.candidates.chips):
        field = f"{where}.chips[{j}]"
        try:
            cat.chip(chip)
            platform = platform_for(cat, chip)
            data.chip(chip)
            data.platform(platform)
        except UserError as exc:
            raise UserError(exc.reason, file=file, field=field, value=chip) from None
    wrong = LLM_KEYS if kind == "rr" else RR_KEYS
    for key in wrong:
        if getattr(s.candidates, key) is not None:
            raise UserError(
                f"does not apply to {kind} services",
                file=file,
                field=f"{where}.{key}",
                value=getattr(s.candidates, key),
            )
    model: Any = cat.model(s.model)
    for ep in s.candidates.ep or ():
        if ep > 1 and (model.moe is None or model.moe.experts % ep):
            raise UserError(
                f"{s.model} has no experts to split {ep} ways",
                file=file,
                field=f"{where}.ep",
                value=ep,
            )
