"""Hand-checked scheduling semantics: chunking, timing, FCFS, preemption, rejection."""

from __future__ import annotations

import numpy as np
import pytest
from llm_reference import ReferenceScheduler
from standin import StandInModel

from mtia_cluster.engine.llm.costs import AS_PER_NS, probe_iteration_cost
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.errors import UserError


def both(limits: ReplicaLimits, arrival, prompt, output, model=None):
    """Outcome of fast and reference schedulers (asserted equal) and the cost table."""
    cost = probe_iteration_cost(
        model or StandInModel(kv_capacity_tokens=limits.kv_capacity_tokens),
        limits.max_num_batched_tokens,
    )
    fast = ReplicaScheduler(cost, limits)
    fast.add_many(np.array(arrival), np.array(prompt), np.array(output))
    fast.run_until(None)
    ref = ReferenceScheduler(cost, limits).run(
        np.array(arrival), np.array(prompt), np.array(output)
    )
    got = fast.outcome()
    for name in ("start_ns", "first_token_ns", "finish_ns", "preemptions"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    return got, cost, fast


def test_single_request_chunked_prefill_then_decodes() -> None:
    limits = ReplicaLimits(32, 4, 16, 4096)
    out, cost, sched = both(limits, [1000], [100], [3])
    t = 1000 * AS_PER_NS
    for done, chunk in ((0, 32), (32, 32), (64, 32), (96, 4)):  # prefill in 4 chunks
        t += cost.duration_as(chunk, done, chunk * done + chunk * (chunk + 1) // 2)
    assert out.start_ns[0] == 1000
    assert out.first_token_ns[0] == t // AS_PER_NS
    for context in (100, 101):  # two decode iterations, 1 token each
        t += cost.duration_as(1, context, context + 1)
    assert out.finish_ns[0] == t // AS_PER_NS
    assert sched.iteration == 6 and sched.tokens_done == 102


def test_decodes_first_then_chunks_fill_budget() -> None:
    """A second prompt is chunked into the budget left after the first one's decode."""
    limits = ReplicaLimits(16, 4, 4, 4096)
    out, cost, _sched = both(limits, [0, 1], [16, 40], [4, 2])
    t = cost.duration_as(16, 0, 16 * 17 // 2)  # A's whole prompt; B arrives meanwhile
    assert out.first_token_ns[0] == t // AS_PER_NS
    assert out.start_ns[1] == t // AS_PER_NS  # B admitted next iteration with 15 tokens
    t += cost.duration_as(16, 16 + 0, 17 + 15 * 16 // 2)
    t += cost.duration_as(16, 17 + 15, 18 + 15 * 15 + 15 * 16 // 2)
    t += cost.duration_as(11, 18 + 30, 19 + 10 * 30 + 10 * 11 // 2)  # A's last, B's rest
    assert out.finish_ns[0] == out.first_token_ns[1] == t // AS_PER_NS
    t += cost.duration_as(1, 40, 41)
    assert out.finish_ns[1] == t // AS_PER_NS
    assert out.batch_size.tolist() == [1, 2]


def test_fcfs_admission_order_under_max_num_seqs() -> None:
    limits = ReplicaLimits(64, 1, 16, 4096)
    out, _, _ = both(limits, [0, 1, 2], [10, 10, 10], [5, 5, 5])
    assert out.start_ns[0] < out.start_ns[1] < out.start_ns[2]
    assert out.start_ns[1] == out.finish_ns[0] and out.start_ns[2] == out.finish_ns[1]


def test_preemption_evicts_newest_and_recomputes() -> None:
    """Two requests whose KV cannot both grow: the newer one is evicted and redone."""
    limits = ReplicaLimits(64, 4, 4, 48)  # 12 blocks of 4 tokens
    out, _, sched = both(limits, [0, 0], [16, 16], [20, 20])
    assert out.preemptions.tolist() == [0, 1]
    assert out.finish_ns[1] > out.finish_ns[0]
    assert sched.tokens_done > 2 * (16 + 20 - 1)
    assert sched.max_used_blocks <= 12


def test_request_that_cannot_fit_is_rejected_at_arrival() -> None:
    limits = ReplicaLimits(64, 4, 4, 48)
    out, _, _ = both(limits, [5, 7], [40, 10], [20, 2])
    assert out.rejected.tolist() == [True, False]
    assert out.finish_ns[0] == 5 and out.start_ns[1] == 7


def test_real_cost_model_is_reproduced() -> None:
    """The integer iteration time matches perf.llm to 1e-9 (checked by the probe itself)."""
    from mtia_cluster.catalog import load_catalog
    from mtia_cluster.perf import llm_iteration_model
    from mtia_cluster.workloads import LLMModel

    cat = load_catalog()
    for chip, model, tp in (
        ("h100", "llama-2-7b", 1),
        ("h100", "llama-2-70b", 4),
        ("h100", "mixtral-8x7b", 2),
    ):
        llm = cat.model(model)
        assert isinstance(llm, LLMModel)
        it = llm_iteration_model(cat.chip(chip), llm, tp=tp, pp=1)
        cost = probe_iteration_cost(it, 2048)
        want = float(it.time_s(100, 20, 5000, 100 * 2000 + 5050))
        assert cost.duration_as(120, 5000, 100 * 2000 + 5050) / 1e18 == pytest.approx(want, 1e-9)


def test_probe_refuses_a_model_of_another_shape() -> None:
    class Quadratic(StandInModel):
        def breakdown(self, p, d, ctx, pairs=None):
            parts = super().breakdown(p, d, ctx, pairs)
            parts["memory_s"] = parts["memory_s"] + 1e-12 * np.asarray(ctx, float) ** 2
            return parts

        def time_s(self, p, d, ctx, pairs=None):
            parts = self.breakdown(p, d, ctx, pairs)
            return np.maximum(parts["compute_s"], parts["memory_s"]) + parts["overhead_s"]

    with pytest.raises(ValueError, match="not of the form"):
        probe_iteration_cost(Quadratic(), 64)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_num_seqs": 0}, "max_num_seqs"),
        ({"block_size": 0}, "block_size"),
        ({"max_num_batched_tokens": 8, "max_num_seqs": 16}, "max_num_batched_tokens"),
        ({"kv_capacity_tokens": 15, "block_size": 16}, "kv_capacity_tokens"),
    ],
)
def test_bad_limits_are_user_errors(kwargs, field) -> None:
    with pytest.raises(UserError, match=field):
        ReplicaLimits(**kwargs).validate(file="scenario.yaml", prefix="pools.llm")


def run_sessions(limits: ReplicaLimits, arrival, prompt, output, session):
    cost = probe_iteration_cost(
        StandInModel(kv_capacity_tokens=limits.kv_capacity_tokens), limits.max_num_batched_tokens
    )
    fast = ReplicaScheduler(cost, limits)
    fast.add_many(np.array(arrival), np.array(prompt), np.array(output), np.array(session))
    fast.run_until(None)
    ref = ReferenceScheduler(cost, limits)
    expected = ref.run(np.array(arrival), np.array(prompt), np.array(output), np.array(session))
    got = fast.outcome()
    for name in ("first_token_ns", "finish_ns", "cached_tokens"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    return got, fast


def test_prefix_cache_reuses_previous_turn() -> None:
    """Turn 2 of a session reuses turn 1's full blocks; a session-less request does not."""
    base = ReplicaLimits(256, 4, 16, 4096)
    arrival, prompt, output = [0, 10**9, 2 * 10**9], [100, 300, 300], [20, 5, 5]
    cached, _ = run_sessions(
        ReplicaLimits(256, 4, 16, 4096, prefix_caching=True), arrival, prompt, output, [7, 7, -1]
    )
    plain, _ = run_sessions(base, arrival, prompt, output, [7, 7, -1])
    assert cached.cached_tokens.tolist() == [0, (100 + 20 - 1) // 16 * 16, 0]
    assert plain.cached_tokens.tolist() == [0, 0, 0]
    ttft = lambda out, i: out.first_token_ns[i] - arrival[i]  # noqa: E731
    assert ttft(cached, 1) < ttft(plain, 1)
    assert ttft(cached, 2) == ttft(plain, 2)


def test_prefix_cache_evicts_least_recently_cached_session() -> None:
    """With room for one cached session only, the older session's entry is evicted."""
    limits = ReplicaLimits(256, 4, 16, 160, prefix_caching=True)  # 10 blocks
    # sessions 1 and 2 each leave 4 full blocks (2 free); session 3 needs 5 blocks: evicts
    # session 1 only. The next turns: session 1's is gone, session 2's is reused.
    arrival = [0, 10**9, 2 * 10**9, 3 * 10**9, 4 * 10**9]
    out, sched = run_sessions(
        limits, arrival, [60, 60, 70, 20, 80], [5, 5, 10, 2, 2], [1, 2, 3, 1, 2]
    )
    assert out.cached_tokens.tolist()[3:] == [0, 64]
    assert sched.kv.used == 0 and sched.free_blocks == 10
