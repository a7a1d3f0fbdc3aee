"""LLM per-rack capacity by replay (rollout/llm_capacity.py): monotone in the SLO, cached per
cohort, its source and search recorded in the summary; --fast stays the cost model.

Searches here use short windows (30-100 s, below the plans' 5 x SLO minimum where the search
is called directly) and a coarse tolerance on one MTIA 400 host (four TP=1 Llama 3.1 70B
replicas), a few seconds each."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtia_cluster.rollout.llm_capacity as llm_capacity
from mtia_cluster.catalog import load_catalog
from mtia_cluster.errors import UserError
from mtia_cluster.rollout.llm_capacity import CapacitySearch, llm_unit_capacity
from mtia_cluster.rollout.rack_capacity import CacheKey, RackCapacity, rack_capacity
from mtia_cluster.rollout.run import cohorts_for, run_rollout
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.workloads import LLMModel
from rollout.plans import make_plan, plan_dict

LLM = "llama-3.1-70b"
OFFLINE_RPS = 661.9  # cost-model MTIA 400 rack figure: only the search's first guess


def llm_plan(**changes: Any) -> dict[str, Any]:
    """A two-region Llama 3.1 70B MTIA 400 -> 450 plan with a cheap capacity search."""
    base = {
        "service": {
            "model": LLM,
            "slo_p99_ms": 20000,
            "capacity": "replay",
            "capacity_search": {"window_s": 100, "rel_tol": 0.2},
        },
        "fleet.regions": [
            {"name": "a", "racks": {"mtia-400": 10}, "demand": {"peak_rps": 800}},
            {"name": "b", "racks": {"mtia-400": 10}, "demand": {"peak_rps": 800}},
        ],
        "target.from_generation": "mtia-400",
        "target.generation": "mtia-450",
        "replay": {"enabled": False},
    }
    return plan_dict(**{**base, **changes})


def _search(slo_s: float) -> llm_capacity.UnitCapacity:
    cat = load_catalog()
    model = cat.model(LLM)
    assert isinstance(model, LLMModel)
    spec = CapacitySearch(window_s=75.0, rel_tol=0.3)  # same trace for every SLO
    return llm_unit_capacity(
        cat, model, "mtia-400", ServiceSLO(latency_ns=round(slo_s * 1e9)), spec, OFFLINE_RPS
    )


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tight=st.floats(15.0, 25.0), extra=st.floats(0.0, 15.0))
def test_capacity_is_monotone_in_the_slo(tight: float, extra: float) -> None:
    """A looser p99 SLO never lowers the capacity. Exact, not within tolerance: both searches
    replay the same trace (the window and guess do not depend on the SLO), so every rate
    passing the tight SLO passes the loose one, and the two searches take the same path until
    the loose one passes a rate the tight one failed, above anything the tight one passed."""
    lo, hi = _search(tight), _search(tight + extra)
    assert lo.requests_per_s > 0  # the SLO is reachable: a real figure is compared
    assert hi.requests_per_s >= lo.requests_per_s
    # the bracket is the figure's uncertainty: narrower than rel_tol, above the figure
    assert lo.requests_per_s < lo.lowest_failing_rps <= lo.requests_per_s * 1.3 + 1e-9


def test_ttft_bound_can_only_lower_capacity() -> None:
    """Adding a TTFT bound to the p99 SLO removes passing rates, never adds one."""
    cat = load_catalog()
    model = cat.model(LLM)
    assert isinstance(model, LLMModel)
    spec = CapacitySearch(window_s=40.0, rel_tol=0.3)
    e2e = llm_unit_capacity(
        cat, model, "mtia-400", ServiceSLO(latency_ns=20_000_000_000), spec, OFFLINE_RPS
    )
    both = llm_unit_capacity(
        cat,
        model,
        "mtia-400",
        ServiceSLO(latency_ns=20_000_000_000, ttft_ns=500_000_000),
        spec,
        OFFLINE_RPS,
    )
    assert both.requests_per_s <= e2e.requests_per_s


@pytest.fixture(scope="module")
def searched(request: pytest.FixtureRequest) -> tuple[dict[CacheKey, RackCapacity], list[str]]:
    """cohorts_for on the LLM plan twice with one cache, counting the searches run."""
    calls: list[str] = []
    real = llm_capacity.capacity_over_span
    mp = pytest.MonkeyPatch()

    def spy(model_name: str, chip: str, *args: Any, **kw: Any) -> Any:
        calls.append(chip)
        return real(model_name, chip, *args, **kw)

    mp.setattr(llm_capacity, "capacity_over_span", spy)
    request.addfinalizer(mp.undo)
    plan, cat = make_plan(llm_plan()), load_catalog()
    cache: dict[CacheKey, RackCapacity] = {}
    first = cohorts_for(plan, cat, "replay", cache)
    again = cohorts_for(plan, cat, "replay", cache)
    assert {k: vars(c) for k, c in first.items()} == {k: vars(c) for k, c in again.items()}
    return cache, calls


def test_cache_is_hit_for_a_repeated_cohort(searched: Any) -> None:
    """Each (model, chip, SLO, config) is searched once per run; a repeat is a cache hit that
    only scales by the units per rack."""
    cache, calls = searched
    assert sorted(calls) == ["mtia-400", "mtia-450"]
    assert len(cache) == 2
    plan = make_plan(llm_plan())
    two = rack_capacity(load_catalog(), plan, "mtia-400", "replay", 2, cache)
    one = rack_capacity(load_catalog(), plan, "mtia-400", "replay", 1, cache)
    assert sorted(calls) == ["mtia-400", "mtia-450"]  # no new search
    assert two.requests_per_s == pytest.approx(2 * one.requests_per_s)
    # a TTFT bound or another search config is another key: a new search is started
    # (here stopped at its start: the search itself is tested above)
    mp = pytest.MonkeyPatch()

    def started(*args: Any, **kw: Any) -> Any:
        raise LookupError("search started")

    mp.setattr(llm_capacity, "capacity_over_span", started)
    try:
        for change in ({"service.ttft_p99_ms": 2000}, {"service.capacity_search.rel_tol": 0.1}):
            other = make_plan(llm_plan(**change))
            with pytest.raises(LookupError, match="search started"):
                rack_capacity(load_catalog(), other, "mtia-400", "replay", 1, cache)
    finally:
        mp.undo()
    assert len(cache) == 2


def test_source_and_search_recorded_in_summary(searched: Any) -> None:
    """summary.json names each cohort's source; the replay figure sits below the cost
    model's all-slots-busy throughput and carries its bracket and search description."""
    cache, calls = searched
    plan = make_plan(llm_plan())
    _, replayed = run_rollout(plan, cache=cache)
    _, fast = run_rollout(plan, fast=True)
    assert sorted(calls) == ["mtia-400", "mtia-450"]  # measured once, by the fixture
    assert replayed["capacity_source"] == "replay" and fast["capacity_source"] == "fast"
    for v in ("old", "new"):
        r, f = replayed["cohorts"][v], fast["cohorts"][v]
        assert r["source"] == "replay" and f["source"] == "fast"
        assert "host group" in r["capacity_detail"] and "e2e p99 20,000 ms" in r["capacity_detail"]
        assert f["capacity_detail"] == "cost model" and f["rps_upper"] is None
        assert 0 < r["rps"] < f["rps"]
        assert r["rps"] < r["rps_upper"] <= r["rps"] * 1.2 + 1e-9
        assert math.isfinite(r["power_w"]) and r["power_w"] > 0


def test_group_larger_than_a_rack_is_refused() -> None:
    plan = make_plan(llm_plan(**{"service.capacity_search": {"hosts": 100}}))
    with pytest.raises(UserError, match="exceeds one mtia-400-rack"):
        cohorts_for(plan, load_catalog(), "replay")
