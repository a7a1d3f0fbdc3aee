"""Multi-turn LLM sessions: follow-up turns whose prompts carry the conversation so far.

Session starts come from the service's arrival process at rate / mean_turns. Each session has
Geometric(1/mean_turns) turns (at least one); turn k+1 arrives an Exponential(think_time_s)
after turn k (the gap covers reading the answer and typing; generation time is not
simulated here). The prompt of a turn is the whole context so far (every earlier new prompt
and answer) plus its new prompt, capped at max_context_tokens, so consecutive turns share a
prefix: what prefix caching exploits. Vectorized: group offsets and cumulative sums, no
per-session Python loop.
"""

from __future__ import annotations

import numpy as np

from mtia_cluster.config.trace_spec import Sessions
from mtia_cluster.traces.generators.sizes import LengthSpec, sample_lengths
from mtia_cluster.units import NS_PER_S


def _group_exclusive_cumsum(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Per group (contiguous runs of `counts`), the sum of the values before each element."""
    c = np.cumsum(values) - values
    return c - np.repeat(c[starts], counts)


def sessionize(
    rng: np.random.Generator, session_starts_ns: np.ndarray, s: Sessions, lengths: LengthSpec
) -> dict[str, np.ndarray]:
    """Expand session starts into turns: arrival_ns (sorted), session_id, token counts."""
    mean_turns, think_s, max_ctx = s.mean_turns, s.think_time_s, s.max_context_tokens
    n_sessions = len(session_starts_ns)
    turns = rng.geometric(1.0 / mean_turns, n_sessions).astype(np.int64)
    starts = np.cumsum(turns) - turns
    total = int(turns.sum())
    session = np.repeat(np.arange(n_sessions, dtype=np.int64), turns)
    gaps = rng.exponential(think_s, total)
    gaps[starts] = 0.0
    offset_s = _group_exclusive_cumsum(gaps, starts, turns) + gaps
    arrival = session_starts_ns[session] + np.floor(offset_s * NS_PER_S).astype(np.int64)
    new_prompt, answer = sample_lengths(rng, lengths, total)
    context = _group_exclusive_cumsum(new_prompt.astype(np.int64) + answer, starts, turns)
    prompt = np.minimum(context + new_prompt, max_ctx).astype(np.int32)
    order = np.argsort(arrival, kind="stable")
    return {
        "arrival_ns": arrival[order],
        "session_id": session[order],
        "input_tokens": prompt[order],
        "output_tokens": answer[order],
    }
