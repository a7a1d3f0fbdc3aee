"""Partial rack capacity: failures of hosts or accelerators inside serving racks.

    failures:
      seed: 1
      parts:
        - {part: host, mtbf_h: 20000, mttr_h: 8}
        - {part: accelerator, mtbf_h: 50000, mttr_h: 48}

A rack of a generation holds `units_per_rack x platform hosts` hosts and `units_per_rack x
platform accelerators` accelerators (catalog). Each step, each healthy part of a serving rack
fails with probability 1 - exp(-step_h / mtbf_h) and is repaired after an exponential time of
mean mttr_h, drawn from the region's own stream `(seed, StreamKind.ROLLOUT_PART_FAILURES,
region index)`. A failed part takes its share of its rack's capacity: version v loses serving_v
x rps_v x min(1, sum over part kinds of down / (serving_v x parts per rack)). Failed parts are
counted against the version's serving racks as a pool: when racks leave service (a swap, a rack
failure) the remaining ones keep at most all their parts down (`min(pending, serving x per
rack)`), the rest repair in the background: failed parts are not tracked to individual racks.
An LLM replica spanning several accelerators would lose more than one accelerator's share; this
model does not (it is per-part proportional).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.config.rollout_plan import PartFailure
from mtia_cluster.rollout.region import VERSIONS
from mtia_cluster.units import NS_PER_H

PARTS = ("host", "accelerator")


@dataclass(frozen=True)
class PartSpec:
    part: str  # host | accelerator
    mtbf_h: float
    mttr_h: float
    per_rack: dict[str, int]  # version -> parts of this kind per rack


def parse_parts(
    parts: list[PartFailure], cat: Catalog, from_gen: str, to_gen: str, units: dict[str, int]
) -> tuple[PartSpec, ...]:
    """`failures.parts` (validated by the plan model) with parts per rack from the catalog
    platforms."""
    from mtia_cluster.planning.capacity import platform_for

    out: list[PartSpec] = []
    for p in parts:
        per_rack = {}
        for version, gen in (("old", from_gen), ("new", to_gen)):
            plat = cat.platform(platform_for(cat, gen))
            per_unit = plat.hosts if p.part == "host" else plat.accelerators
            per_rack[version] = units.get(gen, 1) * per_unit
        out.append(PartSpec(p.part, p.mtbf_h, p.mttr_h, per_rack))
    return tuple(out)


@dataclass
class PartState:
    """Pending repairs per (part, version) of one region."""

    pending: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def step(
        self,
        now_ns: int,
        rng: np.random.Generator,
        specs: tuple[PartSpec, ...],
        step_h: float,
        serving: dict[str, int],
        events: list[tuple[int, str, str, int]],
    ) -> None:
        """Repairs that are due, then new failures among healthy parts of serving racks."""
        for spec in specs:
            for v in VERSIONS:
                key = (spec.part, v)
                due = self.pending.setdefault(key, [])
                kept = [t for t in due if t > now_ns]
                if len(kept) < len(due):
                    events.append((now_ns, f"{spec.part}_repair", v, len(due) - len(kept)))
                self.pending[key] = kept
                healthy = serving[v] * spec.per_rack[v] - self.down(spec, v, serving)
                n = int(rng.binomial(max(healthy, 0), 1.0 - math.exp(-step_h / spec.mtbf_h)))
                if n:
                    for d_h in rng.exponential(spec.mttr_h, n):
                        kept.append(now_ns + max(1, round(float(d_h) * NS_PER_H)))
                    events.append((now_ns, f"{spec.part}_failure", v, n))

    def down(self, spec: PartSpec, version: str, serving: dict[str, int]) -> int:
        """Failed parts of this kind counted against the version's serving racks."""
        pending = len(self.pending.get((spec.part, version), ()))
        return min(pending, serving[version] * spec.per_rack[version])

    def lost_fraction(
        self, specs: tuple[PartSpec, ...], version: str, serving: dict[str, int]
    ) -> float:
        """Share of the version's serving capacity lost to failed parts (at most 1)."""
        if serving[version] <= 0:
            return 0.0
        lost = sum(
            self.down(s, version, serving) / (serving[version] * s.per_rack[version]) for s in specs
        )
        return min(1.0, lost)
