"""Two-pass exact quantiles: bucket properties and equality with np.quantile."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.results.hist import (
    N_BUCKETS,
    SparseCounts,
    ValueCollector,
    bucket_lower_bound,
    bucket_of,
    rank_targets,
    resolve,
)

QS = {"p0": 0.0, "p50": 0.5, "p90": 0.9, "p99": 0.99, "p99_9": 0.999, "p100": 1.0}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**62), min_size=2, max_size=200))
def test_buckets_are_monotone_and_bound_their_values(values: list[int]) -> None:
    v = np.sort(np.array(values, dtype=np.int64))
    b = bucket_of(v)
    assert np.all(np.diff(b) >= 0)
    assert np.all(b >= 0) and np.all(b < N_BUCKETS)
    assert np.all(bucket_lower_bound(b) <= v.astype(np.float64))
    assert np.all(bucket_of(bucket_lower_bound(b)) == b)
    # relative width under 1/128 above the linear range
    big = v >= 128
    upper = bucket_lower_bound(b[big] + 1)
    assert np.all((upper - bucket_lower_bound(b[big])) <= upper / 128 + 1e-9)


def _two_pass(groups: list[np.ndarray], batch: int) -> dict[int, dict[str, float]]:
    """The analysis algorithm over groups given as value arrays, fed in small batches."""
    gid = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)]).astype(np.int64)
    val = np.concatenate(groups)
    hist = SparseCounts()
    for s in range(0, len(val), batch):
        hist.add(gid[s : s + batch] * N_BUCKETS + bucket_of(val[s : s + batch]))
    targets = rank_targets(hist, N_BUCKETS, QS)
    collector = ValueCollector(np.array([t[1] for ts in targets.values() for t in ts]))
    for s in range(0, len(val), batch):
        v = val[s : s + batch]
        collector.add(gid[s : s + batch] * N_BUCKETS + bucket_of(v), v)
    return resolve(targets, collector.value_at())


value_lists = st.lists(
    st.one_of(
        st.integers(0, 300),
        st.integers(0, 10**12),
        st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(value_lists, min_size=1, max_size=4), st.integers(1, 97))
def test_two_pass_equals_numpy_quantile_exactly(groups: list[list[float]], batch: int) -> None:
    arrays = [np.array(g, dtype=np.float64) for g in groups]
    got = _two_pass(arrays, batch)
    for i, a in enumerate(arrays):
        for name, q in QS.items():
            assert got[i][name] == float(np.quantile(a, q)), (name, q)


def test_heavy_duplicates_are_kept_as_one_value_with_a_count() -> None:
    v = np.full(1_000_000, 123_456_789.0)
    key = int(bucket_of(np.array([123_456_789.0]))[0])
    collector = ValueCollector(np.array([key]))
    for s in range(0, len(v), 65_536):
        collector.add(bucket_of(v[s : s + 65_536]), v[s : s + 65_536])
    values, cum = collector.value_at()[key]
    assert values.tolist() == [123_456_789.0]
    assert cum.tolist() == [1_000_000]
    got = _two_pass([v[:200_000], np.arange(10.0)], batch=65_536)
    assert got[0]["p99"] == 123_456_789.0
    assert got[1]["p50"] == 4.5
