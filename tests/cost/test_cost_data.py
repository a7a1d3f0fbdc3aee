"""Cost, power and grid data (configs/catalog/cost/, #19): complete for the catalog, sourced,
strict (an unknown key or a bad value is one line naming file and field, exit 2), and a
scenario's region overrides."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.config.scenario import load_scenario, parse_scenario
from mtia_cluster.cost.data import _load, load_cost_data, region_grid
from mtia_cluster.errors import UserError
from mtia_cluster.paths import configs_dir

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "configs" / "scenarios" / "multi-region.yaml"


def test_every_catalog_chip_and_platform_has_cost_data() -> None:
    cat, data = load_catalog(), load_cost_data()
    assert set(cat.chips) <= set(data.chips)
    assert set(cat.platforms) <= set(data.platforms)
    # every number has a provenance: a source, or an estimate's reasoning
    for path, p in data.provenance.items():
        assert p.status in ("published", "derived", "estimated"), path
        assert p.source or p.note, path


def test_region_names_resolve_to_entries() -> None:
    data = load_cost_data()
    assert data.grid_entry("us-east") == "us-east"
    assert data.grid_entry("us-east-1") == "us-east"  # a numbered zone of a known region
    assert data.grid_entry("us-east-2") == "us-east-2"  # its own entry wins
    assert data.grid_entry("lab") == "default"
    assert data.grid_entry("eu-west-x") == "default"


def test_scenario_overrides_a_regions_grid() -> None:
    doc = yaml.safe_load(SCENARIO.read_text())
    doc["regions"][0]["energy"] = {"grid": "eu-north", "usd_per_kwh": 0.05}
    s = parse_scenario(doc, str(SCENARIO))
    base = load_cost_data().grids["eu-north"]
    g = s.regions[0].grid
    assert g is not None and g.entry == "eu-north" and g.overridden == ("usd_per_kwh",)
    assert (g.usd_per_kwh, g.pue, g.gco2e_per_kwh) == (0.05, base.pue, base.gco2e_per_kwh)
    assert s.regions[1].grid == load_cost_data().grids["eu-west"]


@pytest.mark.parametrize(
    ("energy", "field", "needle"),
    [
        ({"pu": 1.2}, "regions[0].energy.pu", "did you mean 'pue'"),
        ({"pue": 0.9}, "regions[0].energy.pue", ">= 1"),
        ({"usd_per_kwh": "0.1"}, "regions[0].energy.usd_per_kwh", ""),
        ({"grid": "mars"}, "regions[0].energy.grid", "unknown grid entry"),
    ],
)
def test_bad_region_energy_is_one_line(energy: dict[str, Any], field: str, needle: str) -> None:
    doc = yaml.safe_load(SCENARIO.read_text())
    doc["regions"][0]["energy"] = energy
    with pytest.raises(UserError) as err:
        parse_scenario(doc, str(SCENARIO))
    line = str(err.value)
    assert field in line and needle in line and "\n" not in line


def test_bad_region_energy_set_exits_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["simulate", str(SCENARIO), "--trace", str(SCENARIO), "--set", "regions.0.energy.pue=7"],
    )
    assert res.exit_code == 2, res.output
    assert "regions[0].energy.pue" in res.output and len(res.output.strip().splitlines()) == 1


HW, GRID = "hardware.yaml", "regions.yaml"
PRICE = "price_usd: {value: 2500, status: estimated, source: isca25, note:"
EIA = "usd_per_kwh: {value: 0.0892, status: published, source: eia"
BROKEN = [  # (file, text, replacement, field named in the error)
    (HW, "  mtia-2i:\n    price_usd:", "  mtia-2i:\n    price_usdd:", "price_usdd"),
    (HW, "amortization_years: {value: 5.5,", "amortization_years: {value: 0,", "years.value"),
    (HW, PRICE, PRICE.replace("note:", "notes:"), "notes"),
    (GRID, "  us-east:\n    location:", "  us-east:\n    place:", "place"),
    (GRID, EIA + "2023", EIA, "usd_per_kwh.source"),
    (GRID, "{value: 98, status: published", "{value: 98, status: estimated", "gco2e_per_kwh.note"),
]


@pytest.mark.parametrize(("file", "old", "new", "field"), BROKEN)
def test_broken_cost_file_exits_2_naming_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str, old: str, new: str, field: str
) -> None:
    root = tmp_path / "configs"
    shutil.copytree(configs_dir(), root)
    path = root / "catalog" / "cost" / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    monkeypatch.setenv("MTIA_CLUSTER_CONFIGS", str(root))
    _load.cache_clear()
    try:
        res = CliRunner().invoke(cli, ["simulate", str(SCENARIO), "--trace", str(SCENARIO)])
        with pytest.raises(UserError):
            load_cost_data()
    finally:
        _load.cache_clear()
    assert res.exit_code == 2, res.output
    out = res.output.strip()
    assert len(out.splitlines()) == 1 and file in out and field in out, out


def test_region_grid_without_override_is_the_entry() -> None:
    data = load_cost_data()
    assert region_grid(data, "ap-south-1", None) == data.grids["ap-south"]
    assert load_scenario(SCENARIO).regions[0].grid == data.grids["us-east"]
