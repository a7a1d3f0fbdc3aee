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

from mtia_cluster.config import Fields

NS_PER_DAY = 86_400 * 10**9
NS_PER_H = 3_600 * 10**9


@dataclass(frozen=True)
class RackEvent:
    at_ns: int
    region: str
    kind: str  # add | remove
    generation: str
    racks: int
    phase_ns: tuple[int | None, ...]  # (drain, install, burnin) overrides, None: the plan's


def parse_events(
    f: Fields, regions: set[str], generations: set[str], horizon_days: float
) -> tuple[RackEvent, ...]:
    """The plan's `events:` list, validated (UserError naming file, field and value)."""
    if not f.has("events"):
        return ()
    out: list[RackEvent] = []
    for i, item in enumerate(f.list("events")):
        e = Fields(item, f.file, f.path(f"events[{i}]"))
        at_day = e.number("at_day")
        if at_day >= horizon_days:
            raise e.error(
                "at_day", f"not before the timeline's horizon ({horizon_days:g} days)", at_day
            )
        region = e.str("region")
        if region not in regions:
            raise e.error("region", "unknown region", region)
        kind = e.str("kind", choices=("add", "remove"))
        racks = e.sub("racks")
        if not racks.data:
            raise e.error("racks", "needs at least one {GENERATION: count}", racks.data)
        phases = tuple(
            round(e.number(k) * NS_PER_H) if e.has(k) else None
            for k in ("drain_h", "install_h", "burnin_h")
        )
        for gen in racks.data:
            if str(gen) not in generations:
                raise racks.error(
                    str(gen),
                    f"not a generation of this rollout ({', '.join(sorted(generations))})",
                    gen,
                )
            n = racks.int(str(gen), positive=True)
            out.append(RackEvent(round(at_day * NS_PER_DAY), region, kind, str(gen), n, phases))
    return tuple(sorted(out, key=lambda ev: ev.at_ns))
