"""Bounded statistics (histograms) + one collecting read give numpy's exact quantiles
(results/exact.py, results/hist.py `ValueHist`), for any split of the values into pieces."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from results_synth import INTERVAL_NS, REGIONS, SERVICES, SLOS, make_completed

from mtia_cluster.results import ResultsWriter
from mtia_cluster.results.convert import (
    completed_by_region,
    completed_to_table,
    request_file_table,
)
from mtia_cluster.results.exact import IntervalStream, MismatchError, Wanted
from mtia_cluster.results.groupstats import QUANTILES, TOKEN_QUANTILES, narrow
from mtia_cluster.results.hist import N_BUCKETS, ValueHist, bucket_lower_bound, bucket_of
from mtia_cluster.results.intervals import QS, binned_quantiles
from mtia_cluster.results.partials import StatsBuilder

# bucket edges up to 2**52 (ns latencies; integers stay exact in float64 below 2**53)
EDGES = [int(v) for v in bucket_lower_bound(np.arange(N_BUCKETS)) if v <= 2**52][::13]
values_of = st.lists(
    st.one_of(
        st.integers(0, 300),
        st.integers(0, 2**31 - 1),
        st.integers(2**31, 2**52),  # int64, beyond int32 (no narrowing)
        st.sampled_from(EDGES).flatmap(lambda e: st.integers(max(e - 1, 0), e + 1)),
    ),
    min_size=1,
    max_size=300,
)


def _pieces(n: int, cuts: list[int]) -> list[slice]:
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _bounded(values: np.ndarray, cuts: list[int], qs: dict[str, float], zeros: int = 0):
    """Histograms of the pieces merged, then the values collected in other pieces."""
    hist = ValueHist()
    for s in _pieces(len(values), cuts):
        hist = hist.merged(ValueHist.of(values[s]))
    counts = hist.counts.copy()
    if zeros:
        counts = np.concatenate([[counts[0] + zeros], counts[1:]])
    wanted = Wanted.of(counts, qs, zeros)
    for s in _pieces(len(values), cuts[::-1]):
        wanted.collector.add(bucket_of(values[s]), values[s])
    return hist, wanted.resolved()


@settings(max_examples=300, deadline=None)
@given(values_of, st.lists(st.integers(0, 400), max_size=6), st.booleans())
def test_bounded_quantiles_equal_numpy(values: list[int], cuts: list[int], ties: bool) -> None:
    """Ties, a single value, int32 and int64 values, values on and beside bucket edges."""
    v = np.array(values * 3 if ties else values, dtype=np.int64)
    hist, got = _bounded(v, cuts, QUANTILES)
    kept = narrow(v)  # what the kept-value path holds (int32 when every value fits)
    want = {
        k: float(q)
        for k, q in zip(QUANTILES, np.quantile(kept, list(QUANTILES.values())), strict=True)
    }
    assert got == want
    assert (hist.n, hist.total, hist.max) == (len(v), int(v.sum()), int(v.max()))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(0, 1e12, allow_nan=False, allow_infinity=False), min_size=1, max_size=200),
    st.lists(st.integers(0, 300), max_size=4),
)
def test_bounded_quantiles_of_floats_equal_numpy(values: list[float], cuts: list[int]) -> None:
    """TPOT values are float64 (ns per output token)."""
    v = np.array(values)
    _, got = _bounded(v, cuts, TOKEN_QUANTILES)
    want = np.quantile(v, list(TOKEN_QUANTILES.values()))
    assert got == {k: float(q) for k, q in zip(TOKEN_QUANTILES, want, strict=True)}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 10**9), min_size=1, max_size=100),
    st.integers(0, 300),
    st.lists(st.integers(0, 300), max_size=4),
)
def test_network_quantiles_count_the_zeros(nonzero: list[int], zeros: int, cuts: list) -> None:
    """Network time: only values above 0 are counted; the ok requests without any count as
    0 (`network_stats` of the kept-value path; a group with none above 0 has no figure)."""
    v = np.array(nonzero, dtype=np.int64)
    _, got = _bounded(v, cuts, TOKEN_QUANTILES, zeros=zeros)
    want = np.quantile(np.concatenate([np.zeros(zeros), v]), list(TOKEN_QUANTILES.values()))
    assert got == {k: float(q) for k, q in zip(TOKEN_QUANTILES, want, strict=True)}


def test_a_bucket_missing_values_is_refused() -> None:
    v = np.array([5, 7, 1000, 1000, 2**40], dtype=np.int64)
    wanted = Wanted.of(ValueHist.of(v).counts, QUANTILES)
    wanted.collector.add(bucket_of(v[:-1]), v[:-1])  # the top value never read
    with pytest.raises(MismatchError):
        wanted.resolved()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 39), st.integers(0, 2**40)), min_size=1, max_size=300),
    st.integers(1, 60),
    st.booleans(),
)
def test_interval_stream_equals_binned_quantiles(rows: list, group: int, in_order: bool) -> None:
    """Rows cut into row groups, read in the order of their smallest finish, intervals
    computed once no unread row group can finish in them: numpy's per-interval quantiles
    (the kept-value path's `binned_quantiles`); in finish order, at most about two row
    groups are held."""
    finish = np.array([b * 1000 + 7 for b, _ in rows], dtype=np.int64)
    latency = np.array([v for _, v in rows], dtype=np.int64)
    if in_order:
        order = np.argsort(finish, kind="stable")
        finish, latency = finish[order], latency[order]
    cuts = [*range(0, len(rows), group), len(rows)]
    groups = sorted((int(finish[a:b].min()), a, b) for a, b in itertools.pairwise(cuts))
    completed = np.bincount(finish // 1000)
    stream = IntervalStream(1000, completed)
    for k, (_, a, b) in enumerate(groups):
        stream.add(finish[a:b], latency[a:b])
        stream.flush(groups[k + 1][0] if k + 1 < len(groups) else None)
        held = sum(len(x) for x in stream.values)
        if in_order:
            assert held <= 2 * group
    got = stream.result()
    want = binned_quantiles(finish // 1000, narrow(latency), len(completed), list(QS.values()))
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w, equal_nan=True)


def _tables(c):
    for _, rows in completed_by_region(c):
        table = completed_to_table(rows, services=SERVICES, regions=REGIONS, slos=SLOS)
        yield REGIONS[int(rows.region[0])], request_file_table(table)


@pytest.mark.parametrize("n", [300, 6000])
def test_bounded_statistics_do_not_grow_with_requests(n: int) -> None:
    """Every array the bounded statistics hold is at most a histogram or the intervals
    long, whatever the number of requests; the kept-value builder holds one value per ok
    request."""
    c = make_completed(n, seed=1)
    bounded = StatsBuilder(SERVICES, SLOS, INTERVAL_NS, bounded=True)
    kept = StatsBuilder(SERVICES, SLOS, INTERVAL_NS)
    for region, table in _tables(c):
        bounded.add(region, table)
        kept.add(region, table)
    b, k = bounded.result(), kept.result()
    intervals = max(len(i.offered) for i in b.intervals.values())
    arrays = [a for p in b.groups.values() for a in _arrays(p)]
    arrays += [a for i in b.intervals.values() for a in _arrays(i)]
    assert max(len(a) for a in arrays) <= max(N_BUCKETS, intervals)
    values = sum(len(a) for p in k.groups.values() for a in p.latency)
    assert values == int(np.count_nonzero(c.status == 0))
    assert len(pickle.dumps(b)) < (60_000 * len(b.groups) + 10_000)


def _arrays(obj) -> list[np.ndarray]:
    found: list[np.ndarray] = []
    for value in vars(obj).values():
        items = value.values() if isinstance(value, dict) else [value]
        for item in items if not isinstance(value, list) else value:
            if isinstance(item, np.ndarray):
                found.append(item)
            elif isinstance(item, ValueHist):
                found.append(item.counts)
    return found


def test_rows_that_do_not_match_the_statistics_are_refused(tmp_path: Path) -> None:
    """A part lost between the shard's close and finalize: the summary is refused, not
    computed from the rows that remain."""
    c = make_completed(400, seed=4)
    run = ResultsWriter(
        tmp_path / "out",
        manifest={},
        services=SERVICES,
        regions=REGIONS,
        slos=SLOS,
        interval_ns=INTERVAL_NS,
        row_group_rows=64,
    )
    with run.shard(0) as w:
        w.write_completed(c)
    next(run.tmp.glob("requests/region=*/part-*.parquet")).unlink()
    with pytest.raises(MismatchError):
        run.finalize(expected_requests=400)
