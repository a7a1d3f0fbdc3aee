"""Scheduled rack events of a rollout plan (`events:`): racks added (greenfield installs) or
removed (decommissioned) in a region at a given day.

    events:
      - {at_day: 30, region: us-east-1, kind: add, racks: {mtia-2i: 8}}
      - {at_day: 60, region: us-east-1, kind: remove, racks: {mtia-1: 4}}

An added rack arrives at the step at or after `at_day`, is installed (`rollout.swap_time_h.
install` h, or the event's `install_h`) and burnt in (`burnin` h, or `burnin_h`), then
serves. A removed rack is taken out of service at once (serving racks only: failed or
swapping racks are not removed, and the event records how many were), drained for `drain` h
(or `drain_h`) and is then gone. The generation must be the one swapped from or to; an event
after the last timeline step is logged as `rack_event_not_reached`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtia_cluster.config import rollout_plan as rp
from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_DAY, NS_PER_H


@dataclass(frozen=True)
class RackEvent:
    at_ns: int
    region: str
    kind: str  # add | remove
    generation: str
    racks: int
    phase_ns: tuple[int | None, ...]  # (drain, install, burnin) overrides, None: the plan's


def check_region(region: str, regions: set[str], file: str | Path | None, field: str) -> None:
    """A plan entry names one of the plan's regions (UserError naming file and field)."""
    if region not in regions:
        raise UserError("unknown region", file=file, field=field, value=region)


def check_before_horizon(
    at_day: float, horizon_days: float, file: str | Path | None, field: str
) -> None:
    """A plan entry happens before the timeline's horizon (UserError naming file and field)."""
    if at_day >= horizon_days:
        raise UserError(
            f"not before the timeline's horizon ({horizon_days:g} days)",
            file=file,
            field=field,
            value=at_day,
        )


def parse_rack_events(
    events: list[rp.RackEvent],
    file: str | Path | None,
    regions: set[str],
    generations: set[str],
    horizon_days: float,
) -> tuple[RackEvent, ...]:
    """The plan's `events:` (shape checked by the plan model): before the horizon, known
    regions, generations of this rollout (UserError naming file, field and value)."""
    out: list[RackEvent] = []
    for i, e in enumerate(events):
        where = f"events[{i}]"
        check_before_horizon(e.at_day, horizon_days, file, f"{where}.at_day")
        check_region(e.region, regions, file, f"{where}.region")
        phases = tuple(
            None if h is None else round(h * NS_PER_H) for h in (e.drain_h, e.install_h, e.burnin_h)
        )
        for gen, n in e.racks.items():
            if gen not in generations:
                raise UserError(
                    f"not a generation of this rollout ({', '.join(sorted(generations))})",
                    file=file,
                    field=f"{where}.racks.{gen}",
                    value=gen,
                )
            out.append(RackEvent(round(e.at_day * NS_PER_DAY), e.region, e.kind, gen, n, phases))
    return tuple(sorted(out, key=lambda ev: ev.at_ns))
