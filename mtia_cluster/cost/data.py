"""Cost, power and grid data as typed, sourced numbers (configs/catalog/cost/*.yaml).

`hardware.yaml` holds per chip a purchase price and the power of memory-bound work, and per
platform the host's and network's price and power share and the amortization period;
`regions.yaml` holds per region the PUE, the electricity price and the grid's carbon
intensity, with a `default` for unknown regions. Both files are validated by their strict
models (catalog/models.py: `CostFile`, `GridFile`) and every number by
`catalog.quantity.SourcedReader` (range, a source for published/derived numbers, a note for
estimates), each problem one line naming file and field.

A scenario region takes the grid entry of its own name, else of its name without a trailing
``-<number>`` (``us-east-1`` -> ``us-east``), else ``default``; its ``energy:`` block
(config/models.py ``RegionEnergy``) may name another entry (``grid:``) and override PUE,
price and carbon intensity (:func:`region_grid`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mtia_cluster.catalog.models import ChipCost, CostFile, GridEntry, GridFile, PlatformCost
from mtia_cluster.catalog.quantity import Provenance, SourcedReader, field_error
from mtia_cluster.config import load_yaml
from mtia_cluster.config.schema import validate
from mtia_cluster.errors import UserError
from mtia_cluster.paths import configs_dir

HARDWARE_FILE = "hardware.yaml"
REGIONS_FILE = "regions.yaml"
_NUMBERED = re.compile(r"^(?P<base>.+)-\d+$")


@dataclass(frozen=True)
class ChipRates:
    """Price of one accelerator and the power of its memory-bound activity."""

    price_usd: float
    memory_bound_activity: float  # fraction of (TDP - idle) drawn while memory-bound


@dataclass(frozen=True)
class PlatformRates:
    """Per-host additions of a platform and its amortization period."""

    host_price_usd: float
    network_price_usd_per_host: float
    network_power_w_per_host: float
    host_idle_fraction: float
    amortization_years: float


@dataclass(frozen=True)
class Grid:
    """The data center and grid figures a region uses, and which entry they came from."""

    entry: str  # the regions.yaml entry ('default' when none matched)
    location: str
    pue: float
    usd_per_kwh: float
    gco2e_per_kwh: float
    overridden: tuple[str, ...] = ()  # fields the scenario set


@dataclass(frozen=True)
class CostData:
    """All cost data of one configs directory, with the provenance of every number."""

    chips: dict[str, ChipRates]
    platforms: dict[str, PlatformRates]
    grids: dict[str, Grid]  # by entry name, 'default' included
    provenance: dict[str, Provenance] = field(default_factory=dict)
    file: str = ""

    def chip(self, name: str) -> ChipRates:
        """The rates of chip `name` (a UserError when the cost file lacks it)."""
        if name not in self.chips:
            raise UserError("no cost data for this chip", file=self.file, field="chips", value=name)
        return self.chips[name]

    def platform(self, name: str) -> PlatformRates:
        """The rates of platform `name` (a UserError when the cost file lacks it)."""
        if name not in self.platforms:
            raise UserError(
                "no cost data for this platform", file=self.file, field="platforms", value=name
            )
        return self.platforms[name]

    def grid_entry(self, region: str) -> str:
        """The regions.yaml entry region `region` uses by name (see module doc)."""
        if region in self.grids:
            return region
        match = _NUMBERED.match(region)
        if match and match["base"] in self.grids:
            return match["base"]
        return "default"


def _chip(r: SourcedReader, c: ChipCost, path: str) -> ChipRates:
    return ChipRates(
        price_usd=r.quantity(c.price_usd, f"{path}.price_usd", positive=True),
        memory_bound_activity=r.quantity(
            c.memory_bound_activity, f"{path}.memory_bound_activity", max_value=1.0
        ),
    )


def _platform(r: SourcedReader, p: PlatformCost, path: str) -> PlatformRates:
    q = r.quantity
    return PlatformRates(
        host_price_usd=q(p.host_price_usd, f"{path}.host_price_usd"),
        network_price_usd_per_host=q(
            p.network_price_usd_per_host, f"{path}.network_price_usd_per_host"
        ),
        network_power_w_per_host=q(p.network_power_w_per_host, f"{path}.network_power_w_per_host"),
        host_idle_fraction=q(p.host_idle_fraction, f"{path}.host_idle_fraction", max_value=1.0),
        amortization_years=q(p.amortization_years, f"{path}.amortization_years", positive=True),
    )


def _grid(r: SourcedReader, name: str, g: GridEntry, path: str) -> Grid:
    return Grid(
        entry=name,
        location=g.location,
        pue=r.quantity(g.pue, f"{path}.pue", min_value=1.0, max_value=5.0),
        usd_per_kwh=r.quantity(g.usd_per_kwh, f"{path}.usd_per_kwh", max_value=10.0),
        gco2e_per_kwh=r.quantity(g.gco2e_per_kwh, f"{path}.gco2e_per_kwh", max_value=2000.0),
    )


def parse_cost_files(hardware: Any, regions: Any, folder: Path) -> CostData:
    """CostData from the two documents (already loaded YAML) of `folder`."""
    hw_file, grid_file = folder / HARDWARE_FILE, folder / REGIONS_FILE
    hw = validate(CostFile, hardware, hw_file)
    grids = validate(GridFile, regions, grid_file)
    r = SourcedReader(hw_file, hw.sources)
    chips = {n: _chip(r, c, f"chips.{n}") for n, c in hw.chips.items()}
    platforms = {n: _platform(r, p, f"platforms.{n}") for n, p in hw.platforms.items()}
    g = SourcedReader(grid_file, grids.sources)
    table = {"default": _grid(g, "default", grids.default, "default")}
    for name, entry in grids.regions.items():
        if name == "default":
            raise field_error(grid_file, "regions.default", "'default' is a top-level key")
        table[name] = _grid(g, name, entry, f"regions.{name}")
    provenance = {f"{HARDWARE_FILE}:{k}": v for k, v in r.provenance.items()}
    provenance.update({f"{REGIONS_FILE}:{k}": v for k, v in g.provenance.items()})
    return CostData(chips, platforms, table, provenance, str(hw_file))


@functools.lru_cache(maxsize=8)
def _load(root: Path) -> CostData:
    folder = root / "catalog" / "cost"
    return parse_cost_files(
        load_yaml(folder / HARDWARE_FILE), load_yaml(folder / REGIONS_FILE), folder
    )


def load_cost_data(root: str | Path | None = None) -> CostData:
    """The cost data under `root` (default: the configs directory in use). Cached."""
    return _load(Path(root) if root is not None else configs_dir())


def region_grid(
    data: CostData, region: str, energy: Any, file: str | None = None, field_path: str = ""
) -> Grid:
    """The grid figures of scenario region `region`: its entry (by name, or the one its
    ``energy.grid`` names) with the scenario's overrides (``energy``: a validated
    ``config.models.RegionEnergy`` or None)."""
    name = data.grid_entry(region)
    if energy is not None and energy.grid is not None:
        if energy.grid not in data.grids:
            known = ", ".join(sorted(data.grids))
            raise UserError(
                f"unknown grid entry (known: {known})",
                file=file,
                field=f"{field_path}.grid",
                value=energy.grid,
            )
        name = energy.grid
    base = data.grids[name]
    if energy is None:
        return base
    over = {k: getattr(energy, k) for k in ("pue", "usd_per_kwh", "gco2e_per_kwh")}
    over = {k: float(v) for k, v in over.items() if v is not None}
    return replace(base, **over, overridden=tuple(sorted(over)))
