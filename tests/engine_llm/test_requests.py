"""RequestTable.add_many: the Python-list path for the engine's small batches fills exactly
the columns the numpy path fills, and refuses exactly what it refuses (Hypothesis)."""

from __future__ import annotations

import numpy as np
from conftest import replicas
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.llm import requests
from mtia_cluster.engine.llm.requests import RequestTable

ROW = st.tuples(
    st.integers(0, 50),  # arrival step
    st.integers(-1, 400),  # prompt tokens (0 and -1 are rejected)
    st.integers(0, 60),  # output tokens
    st.integers(-1, 3),  # session
    st.booleans(),  # prefilled
)


def _add(table: RequestTable, batches, few: int) -> str | None:
    """Add `batches` with the small-batch threshold `few`; the error message, if refused."""
    old, requests.FEW = requests.FEW, few
    try:
        for arrival, prompt, output, session, done, keys in batches:
            table.add_many(arrival, prompt, output, session, done, keys)
    except ValueError as err:
        return str(err)
    finally:
        requests.FEW = old
    return None


@settings(max_examples=200, deadline=None)
@given(replicas(), st.lists(st.lists(ROW, min_size=1, max_size=8), max_size=4), st.booleans())
def test_small_batches_fill_the_table_like_the_numpy_path(replica, rows, shuffle) -> None:
    _, limits = replica
    batches, t = [], 0
    for batch in rows:
        arrival = []
        for step, *_ in batch:
            t += step
            arrival.append(t)
        if shuffle and len(arrival) > 1:  # out of order: refused by both
            arrival.reverse()
        keys = [[(r[1], 0)] if r[1] % 2 else None for r in batch]
        batches.append(
            (
                np.array(arrival, np.int64),
                np.array([r[1] for r in batch], np.int64),
                np.array([r[2] for r in batch], np.int64),
                np.array([r[3] for r in batch], np.int64),
                np.array([r[4] for r in batch], bool),
                keys,
            )
        )
    few, many = RequestTable(limits), RequestTable(limits)
    assert _add(few, batches, requests.FEW) == _add(many, batches, 0)
    assert vars(few) == vars(many)
