"""The ``events:`` and ``failures:`` sections of a scenario: fleet events inside a replay.

The typed shapes are ``config.models.Event`` and ``Failure`` (an unknown target key such as
``accelerators:`` is refused at load); this module resolves them into the engine's specs.

Shape::

    events:
      - at_s: 30                 # simulated time; applied at the first window boundary >= it
        kind: fail               # fail | repair | drain | undrain
        region: us-east
        service: feed-ranking    # optional: only that service's pools (default: all)
        hosts: [0, 3]            # region-local host indices, or
        racks: [1]               # region-local rack indices, or
        links: [2]               # hosts whose RDMA (scale-out) NIC fails: only the cells that
                                 # need scale-out there (LLM replicas spanning scale-up
                                 # domains, P/D pairs linked over RDMA); or none of the three:
                                 # the whole region
        on_failure: retry        # fail only: retry (re-route in-flight work) | fail

Failures drawn from MTBF/MTTR (each host or rack of the region alternates exponential up and
down times from its own seeded stream; a rack-level failure takes its hosts down together, a
region-level one the whole region, whose traffic then spills under global routing)::

    failures:
      - {level: host, region: us-east, mtbf_s: 600, mttr_s: 60, horizon_s: 3600, on_failure: retry}

A ``fail`` takes the parts out at once: requests queued or running on them are re-routed to
the rest of the region (``retry``, latency counted from the original arrival) or returned
with status ``failed``; nothing is lost. ``repair`` brings them back empty. ``drain`` stops
routing to them and lets in-flight work finish; ``undrain`` routes to them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mtia_cluster.config.models import Event, Failure
from mtia_cluster.errors import UserError, did_you_mean


@dataclass(frozen=True)
class EventSpec:
    """One validated event; targets are resolved against the fleet by the engine."""

    at_ns: int
    kind: str
    region: str
    service: str | None
    hosts: tuple[int, ...] | None
    racks: tuple[int, ...] | None
    on_failure: str
    field_prefix: str  # "events[3]", for errors raised while resolving targets
    links: tuple[int, ...] | None = None  # hosts whose RDMA (scale-out) NICs are affected
    file: str | None = None
    nics: tuple[int, ...] | None = None  # link_* kinds: which NICs of the `links` hosts
    spines: tuple[int, ...] | None = None  # link_* kinds: spine switches of the region
    bandwidth_factor: float = 1.0  # link_degrade: remaining share of the bandwidth

    @property
    def fabric(self) -> bool:
        """Whether the event acts on the fabric (engine/fabric/) rather than on cells."""
        return self.kind.startswith("link_")


def _known(value: str, choices: Sequence[str], file: str | None, field: str, what: str) -> str:
    if value not in choices:
        raise UserError(
            f"unknown {what}" + did_you_mean(value, list(choices)),
            file=file,
            field=field,
            value=value,
        )
    return value


def event_specs(
    events: Sequence[Event], regions: Sequence[str], services: Sequence[str], file: str | None
) -> tuple[EventSpec, ...]:
    """The events (sorted by time, stable), region and service names checked."""
    out = []
    for i, e in enumerate(events):
        prefix = f"events[{i}]"
        given = [k for k in ("hosts", "racks", "links") if getattr(e, k) is not None]
        if len(given) > 1:
            raise UserError(
                "give one of hosts, racks or links",
                file=file,
                field=f"{prefix}.{given[1]}",
                value=given,
            )
        if e.service is not None:
            _known(e.service, services, file, f"{prefix}.service", "service")
        _check_link_event(e, prefix, file)
        out.append(
            EventSpec(
                at_ns=round(e.at_s * 1e9),
                kind=e.kind,
                region=_known(e.region, regions, file, f"{prefix}.region", "region"),
                service=e.service,
                hosts=_indices(e.hosts),
                racks=_indices(e.racks),
                links=_indices(e.links),
                on_failure=e.on_failure,
                field_prefix=prefix,
                file=file,
                nics=_indices(e.nics),
                spines=_indices(e.spines),
                bandwidth_factor=1.0 if e.bandwidth_factor is None else e.bandwidth_factor,
            )
        )
    return tuple(sorted(out, key=lambda ev: ev.at_ns))


def _check_link_event(e: Event, prefix: str, file: str | None) -> None:
    """A link_* event names NICs (`links` hosts, optional `nics`) or `spines`, not both;
    `bandwidth_factor` belongs to link_degrade (required there); other kinds take neither
    `nics`, `spines` nor `bandwidth_factor`."""
    link = e.kind.startswith("link_")
    if not link:
        for key in ("nics", "spines", "bandwidth_factor"):
            if getattr(e, key) is not None:
                raise UserError(
                    "only for link_fail, link_repair, link_degrade",
                    file=file,
                    field=f"{prefix}.{key}",
                    value=getattr(e, key),
                )
        return
    if (e.links is None) == (e.spines is None) or e.hosts is not None or e.racks is not None:
        raise UserError(
            "a link event names either links (hosts' NICs) or spines",
            file=file,
            field=f"{prefix}.kind",
            value=e.kind,
        )
    if e.nics is not None and e.links is None:
        raise UserError(
            "nics needs links (the hosts)", file=file, field=f"{prefix}.nics", value=e.nics
        )
    if (e.bandwidth_factor is None) == (e.kind == "link_degrade"):
        raise UserError(
            "link_degrade needs bandwidth_factor (and only it takes one)",
            file=file,
            field=f"{prefix}.bandwidth_factor",
            value=e.bandwidth_factor,
        )


@dataclass(frozen=True)
class FailureSpec:
    """Failures and repairs drawn per host or rack of a region (or of every region)."""

    level: str  # host | rack | region (the whole region as one)
    region: str | None
    mtbf_s: float
    mttr_s: float
    horizon_s: float
    on_failure: str
    field_prefix: str


def failure_specs(
    failures: Sequence[Failure], regions: Sequence[str], file: str | None
) -> tuple[FailureSpec, ...]:
    """The drawn-failure specs, region names checked."""
    out = []
    for i, x in enumerate(failures):
        if x.region is not None:
            _known(x.region, regions, file, f"failures[{i}].region", "region")
        out.append(
            FailureSpec(
                level=x.level,
                region=x.region,
                mtbf_s=x.mtbf_s,
                mttr_s=x.mttr_s,
                horizon_s=x.horizon_s,
                on_failure=x.on_failure,
                field_prefix=f"failures[{i}]",
            )
        )
    return tuple(out)


def _indices(values: list[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(sorted(set(values)))
