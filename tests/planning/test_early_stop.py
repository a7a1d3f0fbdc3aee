"""The capacity replay's early stop never changes a verdict, and it does stop overloads.

Each case replays the same requests twice: plainly (`Simulation.run`, judged by the one
verdict with the search's rules) and watched (`planning.early_stop.watched_run`). A watched
replay that stops must be one the plain replay judges INVALID; one that does not stop must
return the plain replay's rows exactly.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.engine.cell import Completed, RequestBatch, make_requests
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.planning.capacity import (
    LLM_LENGTHS,
    RR_SIZES,
    one_region_scenario,
    pool_model,
)
from mtia_cluster.planning.early_stop import Doomed, Watch, WatchedShard, watched_run
from mtia_cluster.results.run import summarize
from mtia_cluster.results.verdict import SEARCH_RULES
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes

MS = 1_000_000


@cache
def _scenario(model: str, platform: str):  # type: ignore[no-untyped-def]
    cat = load_catalog()
    pool = pool_model(cat, cat.model(model), platform, hosts=1)
    return one_region_scenario(cat, f"es-{model}", 0, [pool])


def _requests(kind: str, n: int, rate: float, seed: int) -> RequestBatch:
    rng = entity_rng(seed, StreamKind.CAPACITY_WORKLOAD)
    arrival = np.floor(np.cumsum(rng.exponential(1.0, n)) / rate * 1e9).astype(np.int64)
    if kind == "rr":
        return make_requests(arrival, items=sample_sizes(rng, RR_SIZES, n))
    inp, out = sample_lengths(rng, LLM_LENGTHS, n)
    return make_requests(arrival, input_tokens=inp, output_tokens=out)


def _plain_and_watched(
    kind: str, slo: ServiceSLO, n: int, rate: float, seed: int
) -> tuple[bool, Completed, Completed | None]:
    """(plain verdict VALID?, plain rows, watched rows or None when it stopped)."""
    model, platform = ("llama-3.1-8b", "hgx-h100") if kind == "llm" else ("hc3", "mtia-1-server")
    sc = _scenario(model, platform)
    reqs = _requests(kind, n, rate, seed)
    plain = Simulation(sc).run(reqs)
    judged = summarize(plain, rules=SEARCH_RULES, slos={"svc": slo})
    ok = all(v == "VALID" for v in judged.verdicts.values())
    watched = watched_run(Simulation(sc), reqs, slo)
    return ok, plain.requests, None if watched is None else watched.requests


def _check(ok: bool, plain: Completed, watched: Completed | None) -> None:
    if watched is None:
        assert not ok, "stopped a replay that the verdict judges VALID"
        return
    for name in ("request_id", "arrival_ns", "first_token_ns", "finish_ns", "status"):
        assert np.array_equal(getattr(plain, name), getattr(watched, name)), name


@settings(max_examples=25, deadline=None)
@given(
    rate=st.floats(50.0, 3000.0),
    ttft_ms=st.sampled_from([100, 300, 1000, 3000]),
    tpot_ms=st.sampled_from([None, 15, 30, 60]),
    latency_s=st.sampled_from([None, 5, 20]),
    percentile=st.sampled_from([50.0, 90.0, 99.0]),
    n=st.integers(20, 250),
    seed=st.integers(0, 3),
)
def test_llm_early_stop_never_changes_a_verdict(
    rate, ttft_ms, tpot_ms, latency_s, percentile, n, seed
):
    slo = ServiceSLO(
        kind="llm",
        ttft_ns=ttft_ms * MS,
        tpot_ns=None if tpot_ms is None else tpot_ms * MS,
        latency_ns=None if latency_s is None else latency_s * 1000 * MS,
        percentile=percentile,
    )
    _check(*_plain_and_watched("llm", slo, n, rate, seed))


@settings(max_examples=20, deadline=None)
@given(
    rate=st.floats(100.0, 20000.0),
    latency_ms=st.sampled_from([2, 10, 100]),
    percentile=st.sampled_from([90.0, 99.0]),
    n=st.integers(20, 2000),
    seed=st.integers(0, 3),
)
def test_rr_early_stop_never_changes_a_verdict(rate, latency_ms, percentile, n, seed):
    slo = ServiceSLO(kind="rr", latency_ns=latency_ms * MS, percentile=percentile)
    _check(*_plain_and_watched("rr", slo, n, rate, seed))


def test_an_overloaded_replay_stops_long_before_its_end():
    """8 H100s at 10x their capacity: the verdict is settled after a small part of the run."""
    sc = _scenario("llama-3.1-8b", "hgx-h100")
    reqs = _requests("llm", 3000, 2000.0, 0)
    slo = ServiceSLO(kind="llm", ttft_ns=2000 * MS, tpot_ns=100 * MS)
    sim = Simulation(sc)
    watch = Watch.of(slo, reqs)
    sim.shards = [WatchedShard(sim.shards[0], watch)]
    with pytest.raises(Doomed):
        sim.run(reqs)
    assert watch.emitted.sum() < len(reqs) // 2
    assert watched_run(Simulation(sc), reqs, slo) is None


def test_waiting_requests_split_between_ttft_and_tpot():
    """Unemitted requests over TTFT-or-TPOT settle the verdict only when no split between the
    two metrics keeps both under the threshold."""
    n = 1000  # p99: threshold 10 over-bound requests
    arrival = np.zeros(n, np.int64)
    out = np.full(n, 11, np.int64)  # due at 1 s + 10 x 100 ms = 2 s
    reqs = make_requests(arrival, input_tokens=np.full(n, 8), output_tokens=out)
    slo = ServiceSLO(kind="llm", ttft_ns=1000 * MS, tpot_ns=100 * MS)
    watch = Watch.of(slo, reqs)
    assert watch.threshold == 10
    watch.emitted[: n - 19] = True  # 19 waiting
    watch.see(1999 * MS, Completed.empty())  # not due yet: nothing is certain
    watch.emitted[n - 19] = True  # 18 waiting: 9 + 9 fit under the threshold
    watch.next_check_ns = 0
    watch.see(2001 * MS, Completed.empty())
    watch.emitted[n - 19] = False  # 19 waiting and due: one metric must reach 10
    watch.next_check_ns = 0
    with pytest.raises(Doomed):
        watch.see(2001 * MS, Completed.empty())


def test_watched_requests_need_dense_ids():
    reqs = make_requests(np.zeros(3, np.int64), items=np.ones(3), request_id=np.array([0, 2, 5]))
    with pytest.raises(ValueError, match="ids"):
        Watch.of(ServiceSLO(latency_ns=MS), reqs)
