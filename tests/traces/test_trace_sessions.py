"""Multi-turn LLM sessions: turns per session, growing shared context, unique session ids."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.traces.generators import generate_table

SPEC: dict[str, Any] = {
    "duration_s": 4 * 3600,
    "regions": {"a": {}, "b": {}},
    "services": [
        {
            "name": "chat",
            "kind": "llm",
            "rate_per_s": 6.0,
            "sessions": {"mean_turns": 4, "think_time_s": 20, "max_context_tokens": 100_000},
            "lengths": {
                "input": {"dist": "lognormal", "mean": 200, "p99": 1500},
                "output": {"dist": "lognormal", "mean": 150, "p99": 800},
            },
        },
        {"name": "rr", "kind": "rr", "rate_per_s": 1.0},
    ],
}


def _chat(t: pa.Table) -> pa.Table:
    return t.filter(pc.equal(t.column("service").cast(pa.string()), "chat"))


def test_sessions_rate_turns_and_context() -> None:
    t, _ = generate_table(SPEC, seed=2)
    chat = _chat(t)
    assert (
        t.filter(pc.equal(t.column("service").cast(pa.string()), "rr"))
        .column("session_id")
        .null_count
        == t.num_rows - chat.num_rows
    )
    sid = chat.column("session_id").to_numpy()
    region = np.array(chat.column("region").to_pylist())
    # every session lives in one region (ids are unique across streams)
    for s in np.unique(sid)[:200]:
        assert len(set(region[sid == s])) == 1
    # request rate ≈ asked (sessions near the end are cut, so slightly under)
    rate = chat.num_rows / SPEC["duration_s"]
    assert 0.95 * 6.0 < rate < 1.03 * 6.0
    turns = np.bincount(sid)
    turns = turns[turns > 0]
    assert abs(turns.mean() - 4) < 0.25
    # within a session prompts grow: each turn carries the earlier turns as a prefix
    order = np.lexsort((chat.column("arrival_ns").to_numpy(), sid))
    s_sorted, inp = sid[order], chat.column("input_tokens").to_numpy()[order]
    same = s_sorted[1:] == s_sorted[:-1]
    assert np.all(inp[1:][same] > inp[:-1][same])


def test_sessions_are_deterministic_and_valid() -> None:
    a, _ = generate_table(SPEC, seed=5)
    b, _ = generate_table(SPEC, seed=5)
    assert a.equals(b)
    assert np.all(np.diff(a.column("arrival_ns").to_numpy()) >= 0)
    assert a.column("arrival_ns").to_numpy().max() < SPEC["duration_s"] * 1e9
