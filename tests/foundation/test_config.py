"""Config plumbing: --set overrides, validated fields."""

from __future__ import annotations

import pytest

from mtia_cluster.config import apply_overrides, load_yaml
from mtia_cluster.errors import UserError


def test_overrides_parse_types_and_paths():
    cfg = {"router": {"policy": "rr"}, "regions": [{"racks": 2}, {"racks": 3}]}
    out = apply_overrides(
        cfg, ["router.policy=p2c", "regions.1.racks=10", "slo.p99_ms=100", "seed=7"]
    )
    assert out["router"]["policy"] == "p2c" and out["regions"][1]["racks"] == 10
    assert out["slo"] == {"p99_ms": 100} and out["seed"] == 7
    assert cfg["router"]["policy"] == "rr"  # input untouched


@pytest.mark.parametrize(
    "bad", ["novalue", "=3", "a..b=1", "regions.9.racks=1", "router.policy.x=1"]
)
def test_bad_overrides_are_user_errors(bad):
    with pytest.raises(UserError, match="--set"):
        apply_overrides({"router": {"policy": "rr"}, "regions": [{}]}, [bad])


def test_load_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="invalid YAML"):
        load_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_yaml(bad)
