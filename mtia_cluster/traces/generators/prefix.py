"""Hash chains for generated LLM prompts (the trace's ``prefix_blocks``, as Mooncake's
``hash_ids``): which prompts share which prefixes, for prefix-cache modelling.

A service with ``prefix_blocks: {block_tokens: 512, system_prompts: 4,
system_prompt_tokens: 1024}`` gets one hash per ``block_tokens`` block of every prompt, equal
ids meaning equal tokens from the prompt's start to the block's end:

* with ``system_prompts: K`` (default 0) and ``system_prompt_tokens: T``, each session (or
  request, without sessions) starts with one of K shared system prompts of T tokens, drawn
  uniformly; T is added to every prompt's length. Its full blocks get the system prompt's ids;
* a session's content continues it: every turn's prompt is the session's context so far
  (``sessions.py``), so the turns' full blocks beyond the system prompt get the session's ids
  (block m of session s is the same in every turn holding it). Without sessions each
  request is a session of one turn;
* the last block of a prompt, when partial, is the prompt's own (a later turn's block at
  that position holds more tokens).

Ids are dense non-negative integers per stream (offset per stream when streams merge), so
one id never names two contents. Vectorized: one pass over all blocks, no Python loop.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mtia_cluster.config.trace_spec import PrefixBlocks


def add_prefix_chains(
    rng: np.random.Generator, out: dict[str, np.ndarray], f: PrefixBlocks
) -> dict[str, np.ndarray]:
    """`out` (one stream's columns) with system prompts added to its prompts and a
    ``prefix_blocks`` chain per request (offsets ``prefix_offsets``, ids ``prefix_ids``)."""
    block, n_sys, sys_tokens = f.block_tokens, f.system_prompts, f.system_prompt_tokens
    n = len(out["arrival_ns"])
    session = out.get("session_id", np.arange(n, dtype=np.int64))
    prompt = out["input_tokens"].astype(np.int64)
    if n_sys:
        choice = rng.integers(0, n_sys, int(session.max()) + 1 if n else 0)[session]
        prompt = prompt + sys_tokens
    else:
        choice = np.zeros(n, dtype=np.int64)
        sys_tokens = 0
    out = {**out, "input_tokens": prompt.astype(np.int32)}
    lengths = -(-prompt // block)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    row = np.repeat(np.arange(n), lengths)
    m = np.arange(int(offsets[-1])) - offsets[row]  # block index within its prompt
    sys_full = sys_tokens // block
    per_session = int(lengths.max()) if n else 0
    sys_ids = choice[row] * max(sys_full, 1) + m
    session_base = n_sys * max(sys_full, 1)
    session_ids = session_base + session[row] * per_session + m
    own_base = session_base + (int(session.max()) + 1 if n else 0) * per_session
    full = (m + 1) * block <= prompt[row]
    ids = np.where(m < sys_full, sys_ids, np.where(full, session_ids, own_base + row))
    out["prefix_offsets"] = offsets.astype(np.int32)
    out["prefix_ids"] = ids.astype(np.int64)
    return out


def chain_column(offsets: np.ndarray, ids: np.ndarray) -> pa.Array:
    """The ``prefix_blocks`` list<int64> column from offsets and flat ids."""
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int64()))


def reuse_ratio(chains: list[list[int] | None], prompt_tokens: np.ndarray, block: int) -> float:
    """The trace's own prefix reuse, from its hashes alone: the share of prompt tokens in
    leading blocks whose id appeared in an earlier request (arrival order), a block counting
    ``min(block, tokens left in the prompt)``. What a cache that never evicts and sees every
    earlier prompt at once could reuse."""
    seen: set[int] = set()
    reused = 0
    for chain, p in zip(chains, prompt_tokens.tolist(), strict=True):
        if not chain:
            continue
        k = 0
        while k < len(chain) and chain[k] in seen:
            k += 1
        reused += min(k * block, p)
        seen.update(chain)
    total = int(np.sum(prompt_tokens))
    return reused / total if total else 0.0
