"""Region RTTs (#16): catalog defaults with sources, scenario overrides, strict errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.config.network import (
    STATUS_ESTIMATE,
    STATUS_MEASURED,
    STATUS_SCENARIO,
    catalog_rtt_ms,
    great_circle_km,
)
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_MS

POOL = {"service": "s", "model": "svc-det-1ms", "platform": "mtia-2i-rack", "accelerators": 1}


def _scenario(names: list[str], routing: dict[str, Any]) -> Any:
    return parse_scenario(
        {
            "name": "net",
            "global_routing": routing,
            "regions": [{"name": n, "pools": [POOL]} for n in names],
        },
        "net.yaml",
    )


def test_catalog_defaults_are_symmetric_positive_and_sourced() -> None:
    rtt = catalog_rtt_ms()
    for (a, b), (ms, status) in rtt.items():
        assert rtt[(b, a)] == (ms, status)
        assert 0 < ms < 400, (a, b, ms)
        assert status in (STATUS_MEASURED, STATUS_ESTIMATE)
    # a measured pair keeps its published figure; a nearby pair is far below a far one
    assert rtt[("us-east", "eu-west")] == (80.54, STATUS_MEASURED)
    assert rtt[("eu-central", "eu-north")][1] == STATUS_ESTIMATE
    assert rtt[("eu-central", "eu-north")][0] < rtt[("eu-central", "ap-south")][0]


def test_estimates_are_never_below_the_fiber_floor() -> None:
    """Every estimate is at least the great-circle round trip in fiber (stretch >= 1)."""
    floor = 2 * great_circle_km(59.33, 18.07, 26.07, 50.56) / 200.0  # Stockholm - Bahrain
    assert catalog_rtt_ms()[("eu-north", "me-south")][0] >= floor


def test_scenario_overrides_a_pair_and_marks_it() -> None:
    sc = _scenario(
        ["us-east", "eu-west", "ap-northeast"],
        {"policy": "spill", "rtt_ms": {"eu-west": {"us-east": 70.0}}},
    )
    spec = sc.global_routing
    assert spec is not None
    assert spec.rtt.rtt_ns[0, 1] == spec.rtt.rtt_ns[1, 0] == 70 * NS_PER_MS
    assert spec.rtt.status_of("eu-west", "us-east") == STATUS_SCENARIO
    assert spec.rtt.status_of("us-east", "ap-northeast") == STATUS_MEASURED
    assert sc == _scenario(  # a scenario compares by value (nested tuples, no arrays)
        ["us-east", "eu-west", "ap-northeast"],
        {"policy": "spill", "rtt_ms": {"eu-west": {"us-east": 70.0}}},
    )
    assert np.all(np.diag(spec.rtt.rtt_ns) == 0)


def test_home_policy_needs_no_rtt() -> None:
    assert _scenario(["a", "b"], {}).global_routing is None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["x", "y", "z"]), min_size=2, max_size=3, unique=True))
def test_a_region_outside_the_catalog_needs_every_pair(names: list[str]) -> None:
    with pytest.raises(UserError, match="no RTT for regions") as err:
        _scenario(["us-east", *names], {"policy": "spill"})
    assert "net.yaml: global_routing.rtt_ms" in str(err.value)
    # giving every pair involving the new regions makes it valid
    rtt = {n: {"us-east": 10.0 + i} for i, n in enumerate(names)}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            rtt[a][b] = 5.0
    sc = _scenario(["us-east", *names], {"policy": "spill", "rtt_ms": rtt})
    assert sc.global_routing is not None
    m = sc.global_routing.rtt.rtt_ns
    assert np.array_equal(m, m.T) and np.all(m[~np.eye(len(m), dtype=bool)] > 0)


@pytest.mark.parametrize(
    ("rtt", "ending"),
    [
        ({"us-east": {"us-east": 5.0}}, "a region's RTT to itself is 0 (got 5.0)"),
        (
            {"us-east": {"eu-west": 5.0}, "eu-west": {"us-east": 7.0}},
            "rtt_ms.us-east.eu-west = 5.0 but rtt_ms.eu-west.us-east = 7.0",
        ),
    ],
)
def test_rtt_errors_show_one_clean_value(rtt: dict[str, Any], ending: str) -> None:
    with pytest.raises(UserError) as err:
        _scenario(["us-east", "eu-west"], {"policy": "spill", "rtt_ms": rtt})
    assert str(err.value).endswith(ending) and str(err.value).count("(got") <= 1
