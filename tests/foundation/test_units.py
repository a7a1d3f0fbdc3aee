"""One definition per unit factor: mtia_cluster/units.py, nowhere else (issue #14)."""

from __future__ import annotations

import ast
from pathlib import Path

import mtia_cluster
from mtia_cluster import units

PACKAGE = Path(mtia_cluster.__file__).parent
NAMES = {name for name in vars(units) if name.isupper()}


def _module_level_assignments(path: Path) -> set[str]:
    """Names a module assigns at its top level (plain or annotated assignment)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_unit_factors_are_defined_only_in_units() -> None:
    redefined = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        if path != PACKAGE / "units.py"
        for name in _module_level_assignments(path) & NAMES
    }
    assert not redefined, sorted(redefined)


def test_time_factors_are_exact_int_nanoseconds() -> None:
    assert units.NS_PER_US * 1_000 == units.NS_PER_MS
    assert units.NS_PER_MS * 1_000 == units.NS_PER_S
    assert units.NS_PER_S * 60 == units.NS_PER_MIN
    assert units.NS_PER_MIN * 60 == units.NS_PER_H
    assert units.NS_PER_H * 24 == units.NS_PER_DAY
    factors = (units.NS_PER_US, units.NS_PER_MS, units.NS_PER_S, units.NS_PER_H, units.NS_PER_DAY)
    assert all(type(f) is int for f in factors)


def test_count_says_singular_and_plural() -> None:
    from mtia_cluster import fmt

    assert fmt.count(1, "cell") == "1 cell"
    assert fmt.count(0, "cell") == "0 cells" and fmt.count(11, "cell") == "11 cells"
    assert fmt.count(1234, "cell") == "1,234 cells"


def test_rollout_cost_line_prints_human_figures() -> None:
    """Energy and carbon through fmt.number ("36,652 MWh"), not "3.665e+04"."""
    from mtia_cluster.cost.view import rollout_cost_line

    line = rollout_cost_line(
        {
            "facility_energy_mwh": 36652.3,
            "cost_usd": 28.1e6,
            "capex_usd": 23.6e6,
            "energy_cost_usd": 4.5e6,
            "co2e_t": 12436.2,
        }
    )
    assert "36,652 MWh" in line and "12,436 tCO2e" in line and "e+0" not in line
