"""LLM replica statistics (#15 item 6): held-KV integral, preemptions, prefix lookups, KV
transfers, from the scheduler through DeviceCounters to summary.json and `analyze`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import chained, pressured, replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_kv_routing import shared_prefix_trace
from test_llm_simulation import scenario

import mtia_cluster.perf.llm as perf_llm
from mtia_cluster.engine.cell import LLM_COUNTERS, make_requests
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.kvstats import decode_run_token_as
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.llm.stretch import DecodeRun
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import summarize


class PerIteration(ReplicaScheduler):
    """The same scheduler without the decode-run fast path: one iteration at a time."""

    def _try_decode_run(self, until_as: int | None) -> bool:
        return False


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(0, 10**12),
    b=st.integers(0, 10**9),
    a2=st.integers(0, 10**12),
    b2=st.integers(0, 10**9),
    e=st.integers(0, 10**11),
    held0=st.integers(0, 10**6),
    n=st.integers(1, 300),
    k=st.integers(0, 400),
)
def test_decode_run_integral_is_the_sum_over_iterations(a, b, a2, b2, e, held0, n, k):
    run = DecodeRun.__new__(DecodeRun)
    lo, hi = sorted([(a, b), (a2, b2)], key=lambda ab: (ab[1], ab[0]))  # hi: larger slope
    run.a_lo, run.b_lo, run.a_hi, run.b_hi, run.e = lo[0], lo[1], hi[0], hi[1], e
    run.cross = 0 if hi[0] >= lo[0] else -((hi[0] - lo[0]) // (hi[1] - lo[1] or 1))
    brute = sum((held0 + n * (i + 1)) * run.duration(i) for i in range(k))
    assert decode_run_token_as(run, held0, n, k, run.total(k)) == brute


def _run(cls: type, cost: Any, limits: Any, work: tuple, keys: Any = None) -> ReplicaScheduler:
    arrival, prompt, output, sessions = work
    sched = cls(cost, limits)
    sched.add_many(arrival, prompt, output, sessions, keys=keys)
    sched.run_until(None)
    return sched


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.tuples(replicas(), workloads()).map(lambda x: (*x, None)),
        pressured().map(lambda x: (*x, None)),
        chained(),
    )
)
def test_counters_equal_the_per_iteration_scheduler_and_the_rows(case):
    """The decode-run fast path adds exactly what one iteration at a time adds; preemptions
    and reused tokens equal the per-request sums; mean held tokens never exceed the peak."""
    (cost, limits), work, keys = case
    fast = _run(ReplicaScheduler, cost, limits, work, keys)
    slow = _run(PerIteration, cost, limits, work, keys)
    assert fast.t_as == slow.t_as  # the same timeline
    for name in ("kv_token_as", "max_kv_tokens", "preempted", "reused_tokens"):
        assert getattr(fast, name) == getattr(slow, name), name
    out = fast.outcome()
    assert fast.preempted == int(out.preemptions.sum())
    assert fast.reused_tokens == int(out.cached_tokens.sum()) <= fast.queried_tokens
    assert fast.max_kv_tokens <= limits.num_blocks * limits.block_size
    assert fast.kv_token_as <= fast.max_kv_tokens * fast.busy_as


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pressured(), cuts=st.lists(st.integers(1, 10**8), min_size=1, max_size=6))
def test_cell_counters_do_not_depend_on_window_cuts(case, cuts):
    """Counters sampled at a time are the same whether the cell got there in one advance or
    through any cuts (arrivals submitted per window, as the engine does)."""
    (cost, limits), (arrival, prompt, output, sessions) = case
    end = int(arrival.max()) + 10**8 + 1

    def counters(bounds: list[int]) -> dict[str, np.ndarray]:
        cell = LLMReplicaCell(
            ReplicaScheduler(cost, limits), accelerator_ids=np.array([0, 1]), host_id=0
        )
        t0 = 0
        for t in [*bounds, end]:
            sel = (arrival >= t0) & (arrival < t)
            cell.submit(
                make_requests(
                    arrival[sel],
                    items=0,
                    input_tokens=prompt[sel],
                    output_tokens=output[sel],
                    session_id=sessions[sel],
                )
            )
            cell.advance(t)
            t0 = t
        c = cell.device_counters()
        return {name: getattr(c, name) for name in LLM_COUNTERS}

    one = counters([])
    many = counters(sorted({c for c in cuts if c < end}))
    for name in LLM_COUNTERS:
        np.testing.assert_array_equal(one[name], many[name], err_msg=name)
    assert one["kv_capacity_tokens"].tolist() == [limits.num_blocks * limits.block_size, 0]


def burst() -> Any:
    """300 long requests within 2 s: far more KV than one 7B replica holds (preemptions)."""
    rng = entity_rng(11, 1)
    n = 300
    arrival = np.sort(rng.integers(0, 2 * 10**9, n)).astype(np.int64)
    prompt = rng.integers(500, 2500, n).astype(np.int32)
    output = rng.integers(200, 1200, n).astype(np.int32)
    return make_requests(arrival, items=0, input_tokens=prompt, output_tokens=output)


@pytest.mark.parametrize(
    "pool",
    [
        {"accelerators": 2, "max_num_seqs": 256},
        {"accelerators_per_replica": 2, "disaggregation": {"prefill_accelerators": 1}},
    ],
    ids=["plain", "disaggregated"],
)
def test_replica_preemptions_conserve_the_requests_and_any_placement_agrees(pool):
    """Summed over replicas, preemptions equal the requests' (all requests drained, no
    failure); KV transfers equal the requests sent to a decode instance; the summary's LLM
    figures are the same for one shard and two."""
    trace = burst()
    run = Simulation(scenario(pool)).run(trace)
    s = summarize(run).summary
    reps = s["llm_replicas"]
    assert sum(r["preemptions"] for r in reps) == int(run.requests.preemptions.sum())
    (group,) = s["groups"]
    assert group["llm_serving"]["preemptions"] == group["preemptions"]
    if "disaggregation" in pool:
        sent = int(np.count_nonzero(run.requests.output_tokens > 1))
        assert group["llm_serving"]["kv_transfers"] == sent
        assert group["llm_serving"]["replicas"] == 4  # 2 cells x (prefill + decode)
    else:
        assert group["llm_serving"]["preemptions"] > 0  # the burst overflows the KV cache
    for r in reps:
        assert 0 < r["kv_utilization_mean"] <= r["kv_utilization_peak"] <= 1
    two = summarize(Simulation(scenario(pool), shards=2).run(trace)).summary
    assert two["llm_replicas"] == reps
    assert two["groups"][0]["llm_serving"] == group["llm_serving"]


def test_prefix_hit_rate_rises_with_kv_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a shared-prefix trace, a replica with more KV memory reuses more (LRU evicts less),
    as summary.json reports it."""
    trace = shared_prefix_trace(40, 8.0)
    rates = []
    for share in (0.25, 0.4, 0.9):  # of the 80 GB: the KV cache is what the weights leave
        monkeypatch.setattr(perf_llm, "MEMORY_UTILIZATION", share)
        s = summarize(Simulation(scenario({"accelerators": 1, "prefix_caching": True})).run(trace))
        rates.append(s.summary["services"][0]["llm_serving"]["prefix_lookup_hit_rate"])
    assert rates[0] < rates[1] < rates[2], rates


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pressured(), fail_at=st.integers(1, 10**8))
def test_a_failure_keeps_the_counters_and_cuts_the_running_iteration(case, fail_at):
    """Counters sampled at the failure are the same just before and just after it (the
    iteration running then holds its KV only up to the failure), and never go back later."""
    (cost, limits), (arrival, prompt, output, sessions) = case
    cell = LLMReplicaCell(ReplicaScheduler(cost, limits), accelerator_ids=np.array([0]), host_id=0)
    sel = arrival < fail_at
    cell.submit(
        make_requests(arrival[sel], items=0, input_tokens=prompt[sel],
                      output_tokens=output[sel], session_id=sessions[sel])
    )  # fmt: skip
    cell.advance(fail_at)
    before = cell.device_counters()
    cell.evict(fail_at)
    after = cell.device_counters()
    for name in LLM_COUNTERS:
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name), err_msg=name)
    rest = ~sel
    cell.submit(
        make_requests(arrival[rest], items=0, input_tokens=prompt[rest],
                      output_tokens=output[rest], session_id=sessions[rest])
    )  # fmt: skip
    cell.advance(int(arrival.max()) + 10**12)
    later = cell.device_counters()
    for name in ("kv_token_s", "kv_peak_tokens", "preemptions", "prefix_queried_tokens"):
        assert getattr(later, name)[0] >= getattr(after, name)[0], name
