"""Small rollout plans for tests, as mappings (validated by parse_plan like a YAML file)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mtia_cluster.catalog import load_catalog
from mtia_cluster.rollout.plan import Plan, parse_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "rollouts"

BASE: dict[str, Any] = {
    "name": "test-plan",
    "service": {"model": "lc1", "slo_p99_ms": 100, "baseline_p99_ms": 50, "capacity": "fast"},
    "fleet": {
        "regions": [
            {"name": "a", "racks": {"mtia-2i": 10}, "demand": {"peak_rps": 1.0e7}},
            {"name": "b", "racks": {"mtia-2i": 20}, "demand": {"peak_rps": 2.0e7}},
        ]
    },
    "target": {"kind": "generation", "from_generation": "mtia-2i", "generation": "mtia-400"},
    "waves": [["a"], ["b"]],
    "rollout": {
        "install_racks_per_day": 6,
        "swap_time_h": {"drain": 1, "install": 4, "burnin": 2},
        "drain_budget": 0.2,
        "bake_days": 1,
        "on_gate_failure": "rollback",
    },
    "timeline": {"step_h": 1, "horizon_days": 20},
}


def plan_dict(**changes: Any) -> dict[str, Any]:
    """A deep copy of BASE with dotted-path changes, e.g. plan_dict(**{"rollout.bake_days": 2})."""
    d = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = d
        *head, last = path.split(".")
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return d


def make_plan(data: dict[str, Any]) -> Plan:
    return parse_plan(data, "test.yaml", load_catalog())
