"""`completed_by_region` (results/convert.py) splits engine rows by region index exactly: for
any codes (few or many regions, so either radix key width), each region's rows in their
original order, regions ascending, every row once."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.cell import Completed
from mtia_cluster.results.convert import completed_by_region


def _rows(region: np.ndarray) -> Completed:
    n = len(region)
    cols = {f.name: np.arange(n, dtype=np.int64) for f in fields(Completed)}
    return Completed(**{**cols, "region": region.astype(np.int32)})


@settings(max_examples=60, deadline=None)
@given(
    regions=st.sampled_from([1, 2, 16, 255, 256, 257, 40_000]),
    n=st.integers(1, 3000),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_by_region_keeps_each_regions_rows_in_order(regions: int, n: int, seed: int) -> None:
    region = np.random.default_rng(seed).integers(0, regions, n)
    parts = completed_by_region(_rows(region))
    assert [r for r, _ in parts] == sorted(set(region.tolist()))
    for r, part in parts:
        want = np.flatnonzero(region == r)
        assert np.array_equal(part.request_id, want)  # request_id = original position
        assert np.all(part.region == r)
    assert sum(len(p) for _, p in parts) == n
