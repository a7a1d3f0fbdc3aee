"""Invariants of the LLM replica scheduler on random workloads (Hypothesis)."""

from __future__ import annotations

import dataclasses

import numpy as np
from conftest import pressured, replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.llm.limits import NOT_SET, tpot_ns
from mtia_cluster.engine.llm.requests import DECODE
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANY_WORKLOAD = st.one_of(st.tuples(replicas(), workloads()), pressured())  # pressured: KV short


class CheckedScheduler(ReplicaScheduler):
    """Checks KV accounting after every planned iteration and every decode run."""

    def _used_by_requests(self) -> int:
        bs = self.limits.block_size
        total = 0
        for r in self.running:
            held = self.iteration + self.offset[r] if self.state[r] == DECODE else self.computed[r]
            total += -(-held // bs)
        return total

    def _plan(self) -> list[tuple[int, int]]:
        chunks = super()._plan()
        assert 0 <= self.free_blocks <= self.limits.num_blocks
        # blocks reserved for this iteration: held + decoders' new token + chunks
        bs = self.limits.block_size
        reserved = self._used_by_requests() + self.residue_count[self.iteration % bs]
        for r, c in chunks:
            reserved += -(-(self.computed[r] + c) // bs) - -(-self.computed[r] // bs)
        assert reserved == self.used_blocks <= self.limits.num_blocks
        assert len(self.running) <= self.limits.max_num_seqs
        assert self.n_dec + sum(c for _, c in chunks) <= self.limits.max_num_batched_tokens
        return chunks

    def _one_iteration(self) -> None:
        super()._one_iteration()
        assert self._used_by_requests() == self.used_blocks

    def _try_decode_run(self, until_as):
        done = super()._try_decode_run(until_as)
        assert self.free_blocks >= 0 and self._used_by_requests() == self.used_blocks
        return done


@SETTINGS
@given(ANY_WORKLOAD)
def test_kv_never_exceeds_capacity_and_all_finish(drawn) -> None:
    (cost, limits), (arrival, prompt, output, session) = drawn
    sched = CheckedScheduler(cost, limits)
    sched.add_many(arrival, prompt, output, session)
    sched.run_until(None)
    out = sched.outcome()
    assert sched.max_used_blocks <= limits.num_blocks
    assert sched.free_blocks == limits.num_blocks and not sched.running and not sched.waiting
    assert sorted(sched.finished) == list(range(len(arrival)))  # each exactly once
    ok = ~out.rejected
    fits = np.array([limits.fits(int(p), int(d)) for p, d in zip(prompt, output, strict=True)])
    np.testing.assert_array_equal(ok, fits)
    assert np.all(out.start_ns[ok] >= arrival[ok])
    assert np.all(out.first_token_ns[ok] > out.start_ns[ok])
    assert np.all(out.finish_ns[ok] >= out.first_token_ns[ok])
    multi = ok & (output > 1)
    assert np.all(out.finish_ns[multi] > out.first_token_ns[multi])
    assert np.all(out.finish_ns != NOT_SET)
    assert np.all((out.batch_size[ok] >= 1) & (out.batch_size[ok] <= limits.max_num_seqs))
    tpot = tpot_ns(out, output)
    assert np.all(np.isnan(tpot) == (~ok | (output <= 1)))


@SETTINGS
@given(ANY_WORKLOAD)
def test_work_conservation(drawn) -> None:
    """Tokens computed = every admitted request's tokens once, plus what preemption redid."""
    (cost, limits), (arrival, prompt, output, session) = drawn
    sched = ReplicaScheduler(cost, limits)
    sched.add_many(arrival, prompt, output, session)
    sched.run_until(None)
    out = sched.outcome()
    ok = ~out.rejected
    needed = int(np.sum(prompt[ok] + output[ok] - 1)) - int(out.cached_tokens.sum())
    if out.preemptions.sum() == 0:
        assert sched.tokens_done == needed
    else:
        assert sched.tokens_done > needed
    span_ns = sched.t_as // 10**9 - (int(out.start_ns[ok].min()) if ok.any() else 0)
    assert sched.busy_as // 10**9 <= max(span_ns, 0) + 1


@SETTINGS
@given(ANY_WORKLOAD)
def test_guaranteed_no_evict_never_preempts(drawn) -> None:
    """TensorRT-LLM's GUARANTEED_NO_EVICT: a started request is never paused, whatever the
    KV pressure; and the reservation of the running requests never exceeds the cache."""
    (cost, limits), (arrival, prompt, output, session) = drawn
    limits = dataclasses.replace(limits, capacity_policy="guaranteed_no_evict")
    sched = CheckedScheduler(cost, limits)
    sched.add_many(arrival, prompt, output, session)
    sched.run_until(None)
    out = sched.outcome()
    assert not out.preemptions.any()
    assert sched.reserved_blocks == 0 and sorted(sched.finished) == list(range(len(arrival)))
