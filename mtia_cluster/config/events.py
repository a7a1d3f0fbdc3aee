"""The ``events:`` section of a scenario: fleet events applied inside a replay.

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
down times from its own seeded stream; a rack-level failure takes its hosts down together)::

    failures:
      - {level: host, region: us-east, mtbf_s: 600, mttr_s: 60, horizon_s: 3600, on_failure: retry}

A ``fail`` takes the parts out at once: requests queued or running on them are re-routed to
the rest of the region (``retry``, latency counted from the original arrival) or returned
with status ``failed``; nothing is lost. ``repair`` brings them back empty. ``drain`` stops
routing to them and lets in-flight work finish; ``undrain`` routes to them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtia_cluster.config.fields import Fields

EVENT_KINDS = ("fail", "repair", "drain", "undrain")
ON_FAILURE = ("retry", "fail")


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
    field_prefix: str  # "events.3", for errors raised while resolving targets
    links: tuple[int, ...] | None = None  # hosts whose RDMA (scale-out) NICs are affected
    file: str | None = None


def parse_events(f: Fields, regions: list[str]) -> tuple[EventSpec, ...]:
    """Validate the ``events`` list (sorted by time, stable) against the region names."""
    out = []
    for i, raw in enumerate(f.list("events", [])):
        e = Fields(raw, f.file, f"events.{i}")
        at_s = e.number("at_s")  # non-negative by default
        region = e.str("region", choices=regions)
        hosts = _indices(e, "hosts")
        racks = _indices(e, "racks")
        links = _indices(e, "links")
        given = [k for k, v in (("hosts", hosts), ("racks", racks), ("links", links)) if v]
        if len(given) > 1:
            raise e.error(given[1], "give one of hosts, racks or links", given)
        out.append(
            EventSpec(
                at_ns=round(at_s * 1e9),
                kind=e.str("kind", choices=EVENT_KINDS),
                region=region,
                service=e.str("service", None) if e.has("service") else None,
                hosts=hosts,
                racks=racks,
                links=links,
                on_failure=e.str("on_failure", "retry", choices=ON_FAILURE),
                field_prefix=f"events.{i}",
                file=None if f.file is None else str(f.file),
            )
        )
    return tuple(sorted(out, key=lambda ev: ev.at_ns))


@dataclass(frozen=True)
class FailureSpec:
    """Failures and repairs drawn per host or rack of a region (or of every region)."""

    level: str  # host | rack
    region: str | None
    mtbf_s: float
    mttr_s: float
    horizon_s: float
    on_failure: str
    field_prefix: str


def parse_failures(f: Fields, regions: list[str]) -> tuple[FailureSpec, ...]:
    """Validate the ``failures`` list."""
    out = []
    for i, raw in enumerate(f.list("failures", [])):
        e = Fields(raw, f.file, f"failures.{i}")
        out.append(
            FailureSpec(
                level=e.str("level", "host", choices=("host", "rack")),
                region=e.str("region", choices=regions) if e.has("region") else None,
                mtbf_s=e.number("mtbf_s", positive=True),
                mttr_s=e.number("mttr_s", positive=True),
                horizon_s=e.number("horizon_s", positive=True),
                on_failure=e.str("on_failure", "retry", choices=ON_FAILURE),
                field_prefix=f"failures.{i}",
            )
        )
    return tuple(out)


def _indices(e: Fields, key: str) -> tuple[int, ...] | None:
    if not e.has(key):
        return None
    values: Any = e.list(key)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise e.error(key, "must be a non-empty list of integers", values)
    if min(values) < 0:
        raise e.error(key, "indices must be >= 0", values)
    return tuple(sorted(set(values)))
