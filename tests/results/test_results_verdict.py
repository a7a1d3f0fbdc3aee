"""LoadGen-style verdict rules, early stopping, SLO flags and device energy."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from results_synth import counters, device_info

from mtia_cluster.engine.cell import Completed
from mtia_cluster.errors import UserError
from mtia_cluster.results import (
    DeviceTracker,
    ResultsWriter,
    ServiceSLO,
    VerdictRules,
    open_results,
)
from mtia_cluster.results.intervals import binned_quantiles
from mtia_cluster.results.slo import slo_ok
from mtia_cluster.results.verdict import (
    UNJUDGED,
    combined_result,
    early_stopping_odds,
    metric_verdict,
    min_passing_queries,
    verdict,
)


def _exact_odds(h: int, t: int, p: Fraction) -> float:
    """P[Binomial(h + t, 1 - p) <= t] with exact rationals."""
    n, q = h + t, 1 - p
    return float(sum(math.comb(n, k) * q**k * p ** (n - k) for k in range(t + 1)))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(0, 400), t=st.integers(0, 30))
def test_early_stopping_odds_equal_the_exact_binomial(h: int, t: int) -> None:
    assert early_stopping_odds(h, t, 0.99) == pytest.approx(
        _exact_odds(h, t, Fraction(99, 100)), rel=1e-9, abs=1e-300
    )


@settings(max_examples=20, deadline=None)
@given(t=st.integers(0, 40))
def test_min_passing_queries_is_the_smallest_passing_count(t: int) -> None:
    h = min_passing_queries(t, 0.99)
    assert _exact_odds(h, t, Fraction(99, 100)) < 0.01
    assert h == 0 or _exact_odds(h - 1, t, Fraction(99, 100)) >= 0.01


def test_no_overlatency_needs_459_queries_at_p99() -> None:
    # 0.99**459 < 0.01 <= 0.99**458
    assert min_passing_queries(0, 0.99) == 459


@settings(max_examples=100, deadline=None)
@given(
    latencies=st.lists(st.integers(0, 1000), min_size=1, max_size=300),
    failed=st.integers(0, 20),
    bound=st.integers(0, 1000),
    p=st.sampled_from([0.5, 0.9, 0.99, 0.999]),
)
def test_percentile_rule_equals_sorting_with_failures_as_infinite(
    latencies: list[int], failed: int, bound: int, p: float
) -> None:
    values = sorted([*latencies, *([math.inf] * failed)])
    n = len(values)
    over = sum(v > bound for v in values)
    got = metric_verdict(
        name="latency",
        n=n,
        over=over,
        bound_ns=bound,
        p=p,
        rules=VerdictRules(early_stopping=False),
    )
    assert got["percentile_met"] == (values[int(n * p)] <= bound)


def _completed(arrival_ns: np.ndarray, latency_ns: np.ndarray) -> Completed:
    n = len(arrival_ns)
    z32 = np.zeros(n, dtype=np.int32)
    return Completed(
        request_id=np.arange(n, dtype=np.int64),
        service=z32,
        region=z32,
        host_id=z32,
        accelerator_id=z32,
        arrival_ns=arrival_ns,
        start_ns=arrival_ns,
        first_token_ns=arrival_ns + latency_ns,
        finish_ns=arrival_ns + latency_ns,
        status=np.zeros(n, dtype=np.int8),
        batch_size=z32 + 1,
        items=z32 + 10,
        input_tokens=z32,
        output_tokens=z32,
        preemptions=z32,
        cached_tokens=z32.astype(np.int64),
        origin_region=z32,
        spill_rtt_ns=z32.astype(np.int64),
    )


def _verdict(tmp_path: Path, arrival_ns: np.ndarray, latency_ns: np.ndarray) -> dict:
    slo = {"rr": ServiceSLO(kind="rr", latency_ns=100_000_000)}
    with (
        ResultsWriter(
            tmp_path / "o",
            manifest={},
            services=["rr"],
            regions=["r"],
            slos=slo,
            interval_ns=10_000_000_000,
        ) as run,
        run.shard(0) as shard,
    ):
        shard.write_completed(_completed(arrival_ns, latency_ns))
    return open_results(tmp_path / "o").summary["groups"][0]["verdict"]


def test_long_fast_run_is_valid(tmp_path: Path) -> None:
    arrival = np.linspace(0, 700e9, 1000).astype(np.int64)
    v = _verdict(tmp_path, arrival, np.full(1000, 5_000_000))
    assert v["result"] == "VALID" and v["reasons"] == []


def test_short_run_is_invalid_for_duration_only(tmp_path: Path) -> None:
    arrival = np.linspace(0, 10e9, 1000).astype(np.int64)
    v = _verdict(tmp_path, arrival, np.full(1000, 5_000_000))
    assert v["result"] == "INVALID"
    assert v["reasons"] == ["last request arrives at 10 s, before the min duration (600 s)"]


def test_slow_tail_is_invalid_and_early_stopping_counts(tmp_path: Path) -> None:
    arrival = np.linspace(0, 700e9, 1000).astype(np.int64)
    latency = np.full(1000, 5_000_000)
    latency[:20] = 200_000_000  # 2% over the bound
    v = _verdict(tmp_path, arrival, latency)
    assert v["result"] == "INVALID"
    (m,) = v["metrics"]
    assert m["overlatency_queries"] == 20 and not m["percentile_met"]
    assert m["early_stopping_min_queries"] == 20 + min_passing_queries(20, 0.99)


def test_llm_slo_ok_compares_tpot_exactly_at_the_boundary() -> None:
    slo = ServiceSLO(kind="llm", ttft_ns=100, tpot_ns=10)
    arrival = np.zeros(4, dtype=np.int64)
    first = np.array([100, 100, 101, 50])
    finish = first + np.array([90, 91, 0, 10_000])
    out = np.array([10, 10, 1, 1])
    got = slo_ok(
        slo,
        status=np.zeros(4, dtype=np.int8),
        arrival_ns=arrival,
        first_token_ns=first,
        finish_ns=finish,
        output_tokens=out,
    )
    # 90/9 = 10 ok; 91/9 > 10 late; TTFT 101 > 100 late; one token: no TPOT
    assert got.tolist() == [True, False, False, True]


def test_device_energy_is_idle_plus_busy_share() -> None:
    info = device_info()
    tracker = DeviceTracker(info, regions=["a", "b", "c"], chips=["x"], services=["s", "t"])
    ids = info.accelerator_id
    t0 = tracker.interval(counters(0, ids[::-1].copy()), start_ns=0, end_ns=1_000_000_000)
    t1 = tracker.interval(counters(1, ids), start_ns=1_000_000_000, end_ns=2_000_000_000)
    for table in (t0, t1):
        busy_s = table["busy_ns"].to_numpy() / 1e9
        assert table["accelerator_id"].to_pylist() == ids.tolist()
        np.testing.assert_allclose(table["energy_j"].to_numpy(), 30.0 + 55.0 * busy_s)
        np.testing.assert_allclose(table["utilization"].to_numpy(), busy_s)
    # interval figures are differences of the cumulative counters
    assert t1["busy_ns"].to_pylist() == ((ids + 1) * 10_000_000).tolist()
    with pytest.raises(UserError, match="every accelerator"):
        tracker.interval(counters(2, ids[:3]), start_ns=2, end_ns=3)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**9)), max_size=200),
    q=st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 1.0]),
)
def test_binned_quantiles_equal_numpy_per_bin(values: list[tuple[int, int]], q: float) -> None:
    bins = np.array([b for b, _ in values], dtype=np.int64)
    vals = np.array([v for _, v in values], dtype=np.int64)
    (got,) = binned_quantiles(bins, vals, 6, [q])
    for b in range(6):
        mine = vals[bins == b]
        if len(mine):
            assert got[b] == pytest.approx(np.quantile(mine, q), rel=1e-12)
        else:
            assert np.isnan(got[b])


def test_slos_from_scenario_section() -> None:
    from mtia_cluster.slo import slos_from_scenario

    got = slos_from_scenario(
        {"feed": {"p99_ms": 10}, "chat": {"ttft_p99_ms": 2000, "tpot_p99_ms": 0.2}}
    )
    assert got["feed"] == ServiceSLO(kind="rr", latency_ns=10_000_000)
    assert got["chat"] == ServiceSLO(kind="llm", ttft_ns=2_000_000_000, tpot_ns=200_000)
    with pytest.raises(UserError, match="unknown SLO target"):
        slos_from_scenario({"feed": {"p95_ms": 10}})


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([0, 1, 10**6, 2**40 - 1, 2**40, 2**50])),
        max_size=60,
    )
)
def test_binned_quantiles_both_sort_paths(values: list[tuple[int, int]]) -> None:
    bins = np.array([b for b, _ in values], dtype=np.int64)
    vals = np.array([v for _, v in values], dtype=np.int64)
    (got,) = binned_quantiles(bins, vals, 4, [0.9])
    for b in range(4):
        mine = vals[bins == b]
        if len(mine):
            assert got[b] == pytest.approx(np.quantile(mine, 0.9), rel=1e-12)


def test_idle_accelerators_count_in_region_power_not_in_groups(tmp_path: Path) -> None:
    info = device_info()
    info.service[:] = [0, -1, 0, -1, 0, -1]  # odd accelerators idle
    regions = ["a", "b", "c"]
    slo = {"s": ServiceSLO(kind="rr", latency_ns=100_000_000)}
    with ResultsWriter(
        tmp_path / "o", manifest={}, services=["s"], regions=regions, slos=slo
    ) as run:
        tracker = DeviceTracker(info, regions=regions, chips=["x"], services=["s"])
        with run.shard(0) as shard:
            shard.write_completed(_completed(np.arange(10, dtype=np.int64), np.ones(10, np.int64)))
            table = tracker.interval(counters(0, info.accelerator_id), start_ns=0, end_ns=10**9)
            assert table["service"].null_count == 3
            shard.write_devices(table)
    summary = open_results(tmp_path / "o").summary
    energy = table["energy_j"].to_numpy()
    (group,) = [g for g in summary["groups"] if g["region"] == "a"]
    assert group["accelerators"] == 1 and group["energy_j"] == pytest.approx(energy[0])
    (region_a,) = [r for r in summary["regions"] if r["region"] == "a"]
    assert region_a["accelerators"] == 2
    assert region_a["energy_j"] == pytest.approx(energy[0] + energy[1])


def test_reasons_are_formatted_and_say_what_they_measure() -> None:
    rules = VerdictRules(early_stopping=False)
    m = metric_verdict(name="latency", n=10, over=10, bound_ns=100_000_000, p=0.99, rules=rules)
    v = verdict([m], duration_ns=2_500_000_000, rules=rules, requests=10)
    assert v["reasons"] == [
        "latency: 10 of 10 requests over 100 ms, percentile bound not met",
        "last request arrives at 2.5 s, before the min duration (600 s)",
    ]


def test_a_group_without_requests_is_not_judged() -> None:
    rules = VerdictRules()
    m = metric_verdict(name="latency", n=0, over=0, bound_ns=10**8, p=0.99, rules=rules)
    assert verdict([m], duration_ns=0, rules=rules, requests=0)["result"] == "NO_REQUESTS"
    assert verdict([m], duration_ns=0, rules=rules)["result"] == "INVALID"  # count unknown


@given(st.lists(st.sampled_from(["VALID", "INVALID", "NO_SLO", "NO_REQUESTS"]), max_size=6))
def test_combined_result_counts_judged_groups_only(results: list[str]) -> None:
    got = combined_result(results)
    judged = [r for r in results if r not in UNJUDGED]
    assert (got == "INVALID") == ("INVALID" in judged)
    assert (got == "VALID") == (bool(judged) and set(judged) == {"VALID"})
    if not judged:
        assert got == ("NO_REQUESTS" if set(results) <= {"NO_REQUESTS"} else "NO_SLO")
