"""The capacity search finds the threshold of any monotone verdict, within its tolerance."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.errors import UserError
from mtia_cluster.planning.search import find_max_rate


def mm1_p99_ok(service_s: float, slo_s: float):
    """M/M/1: sojourn time is exponential with rate mu - lambda, so p99 = ln(100)/(mu - lam)."""
    mu = 1.0 / service_s

    def evaluate(rates):
        return [lam < mu and math.log(100) / (mu - lam) <= slo_s for lam in rates]

    return evaluate, mu - math.log(100) / slo_s


def test_finds_mm1_capacity_under_p99_slo():
    evaluate, truth = mm1_p99_ok(service_s=0.001, slo_s=0.010)
    res = find_max_rate(evaluate, initial_rate=10.0, parallel=4, rel_tol=0.01)
    assert res.best_rate <= truth < res.lowest_failing
    assert res.rel_width <= 0.01


@settings(max_examples=80, deadline=None)
@given(
    threshold=st.floats(1e-3, 1e6),
    guess=st.floats(1e-3, 1e6),
    parallel=st.integers(1, 8),
    tol=st.sampled_from([0.005, 0.02, 0.1]),
    step=st.sampled_from([2.0, 1.25, 1.01]),
)
def test_bracket_always_contains_the_threshold(threshold, guess, parallel, tol, step):
    res = find_max_rate(
        lambda rs: [r <= threshold for r in rs],
        guess,
        parallel=parallel,
        rel_tol=tol,
        max_rounds=200,
        step=step,
    )
    assert res.best_rate <= threshold < res.lowest_failing
    assert res.rel_width <= tol
    # Never claims a rate that was judged failing.
    assert (res.best_rate, True) in res.evaluations


def test_more_parallelism_needs_fewer_rounds():
    rounds = [
        find_max_rate(lambda rs: [r <= 1234.5 for r in rs], 1.0, parallel=p, rel_tol=0.01).rounds
        for p in (1, 4, 8)
    ]
    assert rounds[0] > rounds[1] >= rounds[2]


def test_nothing_passes_returns_zero():
    res = find_max_rate(lambda rs: [False] * len(rs), 1.0, parallel=2, min_rate=1e-3)
    assert res.best_rate == 0.0


def test_bad_arguments():
    with pytest.raises(UserError, match="initial_rate"):
        find_max_rate(lambda rs: [True] * len(rs), 0.0)
    with pytest.raises(UserError, match="parallel"):
        find_max_rate(lambda rs: [True] * len(rs), 1.0, parallel=0)


def test_max_rate_caps_the_search():
    res = find_max_rate(lambda rs: [True] * len(rs), 1.0, parallel=3, max_rate=50.0)
    assert res.best_rate == 50.0 and res.lowest_failing == float("inf")
    assert max(r for r, _ in res.evaluations) <= 50.0


@settings(max_examples=60, deadline=None)
@given(
    st.floats(1.0, 1e6),
    st.floats(1e-2, 1e2),
    st.integers(1, 6),
)
def test_progress_hook_estimates_the_evaluations_left(threshold, guess_ratio, parallel):
    """on_round (the capacity command's progress) is called once per round; its estimate of
    evaluations left is 0 exactly when the search has converged (before that it is an
    estimate: the bracketing phase cannot know how far it must grow)."""
    seen = []
    res = find_max_rate(
        lambda rates: [r <= threshold for r in rates],
        threshold * guess_ratio,
        parallel=parallel,
        rel_tol=0.02,
        on_round=lambda r, left: seen.append((r.rounds, len(r.evaluations), left)),
    )
    assert [s[0] for s in seen] == list(range(1, res.rounds + 1))
    assert seen[-1][2] == 0 and seen[-1][1] == len(res.evaluations)
    assert all(left > 0 for _, _, left in seen[:-1])
    assert res.rel_width <= 0.02


def test_a_good_guess_with_a_small_step_needs_fewer_evaluations():
    """From a guess 10% above the threshold, a first step of 1.25 brackets it at once; the
    default step of 2 spends its first rounds far from it."""
    evaluations = [
        len(
            find_max_rate(
                lambda rs: [r <= 100.0 for r in rs], 110.0, parallel=1, rel_tol=0.03, step=s
            ).evaluations
        )
        for s in (1.25, 2.0)
    ]
    assert evaluations[0] < evaluations[1]


def test_step_must_exceed_one():
    with pytest.raises(UserError):
        find_max_rate(lambda rs: [True] * len(rs), 1.0, step=1.0)
