"""The region-to-region round-trip times a scenario's global routing uses (docs/network.md).

Defaults come from ``configs/catalog/network/regions.yaml``: measured pairs with their
source, and for every other pair of catalog regions an estimate from the great-circle
distance between the regions' sites at the speed of light in fiber, times a path stretch
fitted as the median of measured / (2 x distance / fiber speed) over the measured pairs. A
scenario's ``global_routing.rtt_ms`` overrides any pair and must give every pair that
involves a region the catalog does not list. Resolution happens at load, so a missing pair,
an unknown region name or an asymmetric override exits 2 with one line before any work.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.models import GlobalRouting, RegionCatalogFile
from mtia_cluster.config.schema import validate
from mtia_cluster.errors import UserError
from mtia_cluster.paths import configs_dir
from mtia_cluster.units import NS_PER_MS

EARTH_RADIUS_KM = 6371.0
STATUS_MEASURED, STATUS_ESTIMATE, STATUS_SCENARIO = "measured", "estimate", "scenario"


@dataclass(frozen=True)
class RegionRtt:
    """RTTs between a scenario's regions (in scenario order) and where each comes from.

    Held as nested tuples so that a Scenario stays comparable and hashable by value."""

    regions: tuple[str, ...]
    rows_ns: tuple[tuple[int, ...], ...]  # [R][R] ns, symmetric, zero diagonal
    status: tuple[tuple[str, str, str], ...]  # (a, b, status), a before b in scenario order

    @property
    def rtt_ns(self) -> np.ndarray:
        """The matrix as int64 [R, R]."""
        return np.array(self.rows_ns, dtype=np.int64).reshape(len(self.regions), -1)

    def status_of(self, a: str, b: str) -> str:
        """Where the RTT of a pair comes from: measured, estimate or scenario."""
        for x, y, how in self.status:
            if {x, y} == {a, b}:
                return how
        raise KeyError((a, b))


@dataclass(frozen=True)
class GlobalRoutingSpec:
    """The scenario's global routing, resolved (config/models.GlobalRouting)."""

    policy: str  # home | spill
    spill_outstanding_per_cell: float | None
    rtt: RegionRtt


def catalog_file() -> Path:
    return configs_dir() / "catalog" / "network" / "regions.yaml"


@functools.lru_cache(maxsize=4)
def catalog_rtt_ms(path: Path | None = None) -> dict[tuple[str, str], tuple[float, str]]:
    """(a, b) -> (RTT ms, status) for every ordered pair of catalog regions (a != b)."""
    p = path or catalog_file()
    doc = validate(RegionCatalogFile, load_yaml(p), p)
    measured: dict[tuple[str, str], float] = {}
    for i, m in enumerate(doc.measured_rtt_ms):
        for key, name in (("a", m.a), ("b", m.b)):
            if name not in doc.regions:
                raise UserError(
                    "unknown region", file=p, field=f"measured_rtt_ms[{i}].{key}", value=name
                )
        if m.source not in doc.sources:
            raise UserError(
                "unknown source", file=p, field=f"measured_rtt_ms[{i}].source", value=m.source
            )
        measured[(m.a, m.b)] = measured[(m.b, m.a)] = m.ms

    def floor_ms(a: str, b: str) -> float:
        """The fiber RTT over the great circle between two sites."""
        sa, sb = doc.regions[a], doc.regions[b]
        return 2.0 * great_circle_km(sa.lat, sa.lon, sb.lat, sb.lon) / doc.fiber_km_per_ms

    stretch = float(np.median([ms / floor_ms(a, b) for (a, b), ms in measured.items()]))
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for a in doc.regions:
        for b in doc.regions:
            if a == b:
                continue
            if (a, b) in measured:
                out[(a, b)] = (measured[(a, b)], STATUS_MEASURED)
            else:
                out[(a, b)] = (round(stretch * floor_ms(a, b), 2), STATUS_ESTIMATE)
    return out


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two points on a spherical Earth."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def resolve_global_routing(
    doc: GlobalRouting, regions: list[str], file: str | None
) -> GlobalRoutingSpec | None:
    """The resolved global routing, None for policy ``home`` with no RTTs given (regions are
    islands: nothing reads an RTT). Every pair of scenario regions must have an RTT."""
    _check_names(doc, regions, file)
    if doc.policy == "home" and not doc.rtt_ms:
        return None
    defaults = catalog_rtt_ms()
    n = len(regions)
    rtt = np.zeros((n, n), dtype=np.int64)
    status: list[tuple[str, str, str]] = []
    for i, a in enumerate(regions):
        for j in range(i + 1, n):
            b = regions[j]
            given = doc.rtt_ms.get(a, {}).get(b, doc.rtt_ms.get(b, {}).get(a))
            if given is not None:
                ms, how = given, STATUS_SCENARIO
            elif (a, b) in defaults:
                ms, how = defaults[(a, b)]
            else:
                raise UserError(
                    f"no RTT for regions {a!r} and {b!r} (not both in {catalog_file().name}); "
                    f"give global_routing.rtt_ms.{a}.{b}",
                    file=file,
                    field="global_routing.rtt_ms",
                )
            if ms <= 0.0:
                raise UserError(
                    "the RTT between two distinct regions must be > 0 ms",
                    file=file,
                    field=f"global_routing.rtt_ms.{a}.{b}",
                    value=ms,
                )
            rtt[i, j] = rtt[j, i] = round(ms * NS_PER_MS)
            status.append((a, b, how))
    return GlobalRoutingSpec(
        doc.policy,
        doc.spill_outstanding_per_cell,
        RegionRtt(tuple(regions), tuple(map(tuple, rtt.tolist())), tuple(status)),
    )


def _check_names(doc: GlobalRouting, regions: list[str], file: str | None) -> None:
    """Every region named in rtt_ms is one of the scenario's."""
    for a, row in doc.rtt_ms.items():
        for name, path in [(a, f"global_routing.rtt_ms.{a}")] + [
            (b, f"global_routing.rtt_ms.{a}.{b}") for b in row
        ]:
            if name not in regions:
                raise UserError(
                    f"unknown region (scenario regions: {', '.join(regions)})",
                    file=file,
                    field=path,
                    value=name,
                )
