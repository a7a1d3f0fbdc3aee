"""Prefill without chunking (``ReplicaLimits.chunked_prefill`` False, TensorRT-LLM 2024's
GptManager default): a prompt is prefilled whole in one iteration or waits."""

from __future__ import annotations

import dataclasses

import numpy as np
from test_semantics import both

from mtia_cluster.engine.llm.costs import AS_PER_NS
from mtia_cluster.engine.llm.limits import ReplicaLimits

CHUNKED = ReplicaLimits(10, 4, 2, 4096)
WHOLE = dataclasses.replace(CHUNKED, chunked_prefill=False)


def test_second_prompt_waits_for_a_whole_budget_instead_of_a_chunk() -> None:
    """Two 6-token prompts at t=0, budget 10: chunked, B is admitted at once with a 4-token
    chunk; unchunked, A runs alone and B is admitted, whole, in the next iteration (with
    A's decode: 1 + 6 <= 10)."""
    chunked, _, _ = both(CHUNKED, [0, 0], [6, 6], [2, 2])
    assert chunked.start_ns[1] == 0
    whole, cost, sched = both(WHOLE, [0, 0], [6, 6], [2, 2])
    t = cost.duration_as(6, 0, 6 * 7 // 2)  # A's prompt alone
    assert whole.start_ns[0] == 0 and whole.first_token_ns[0] == t // AS_PER_NS
    assert whole.start_ns[1] == t // AS_PER_NS
    t += cost.duration_as(7, 6, 7 + 6 * 7 // 2)  # A's decode + B's whole prompt
    assert whole.finish_ns[0] == whole.first_token_ns[1] == t // AS_PER_NS
    assert sched.iteration == 3


def test_every_prompt_is_prefilled_in_its_first_iteration() -> None:
    """With no chunking the iteration that starts a request samples its first token: no
    request's prefill spans two iterations (chunked, the long ones do)."""
    rng = np.random.default_rng(3)
    n = 60
    arrival = np.sort(rng.integers(0, 10**9, n))
    prompt, output = rng.integers(1, 10, n), rng.integers(1, 6, n)
    for limits, split in ((WHOLE, False), (CHUNKED, True)):
        out, cost, _ = both(limits, arrival, prompt, output)
        # the shortest possible iteration after the start: any prefill is at least that
        first_iteration = (out.first_token_ns - out.start_ns) * AS_PER_NS
        two = first_iteration >= 2 * cost.duration_as(1, 0, 1)
        assert two.any() == split
        if not split:
            assert (out.preemptions == 0).all()


def test_a_prompt_longer_than_the_budget_is_rejected_only_without_chunking() -> None:
    assert CHUNKED.fits(11, 1) and not WHOLE.fits(11, 1) and WHOLE.fits(10, 1)
    # a preempted request is recomputed whole: prompt + all but the last output token
    assert not WHOLE.fits(8, 4) and WHOLE.fits(8, 3)
    no_evict = dataclasses.replace(WHOLE, capacity_policy="guaranteed_no_evict")
    assert no_evict.fits(8, 4) and not no_evict.fits(11, 1)  # never preempted: prompt only
    out, _, _ = both(WHOLE, [0, 5], [11, 3], [1, 2])
    assert out.rejected.tolist() == [True, False]
