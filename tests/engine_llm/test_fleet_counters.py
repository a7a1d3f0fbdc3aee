"""The compiled fleet's counters at metrics boundaries (engine/llm/fleetcounters.py) equal
what the cell computes from a scheduler holding the same scalars (``jitglue.set_scalars``,
``cell.replica_values``, ``cell.counters_from``), for any scalars the kernel can record:
attosecond sums far beyond int64, an iteration running past the bound by less than a
nanosecond or by seconds, memory-bound or not, cells whose bound lies past the boundary.
The replays of tests/engine_llm/test_fleet_kernel.py cover the states a span reaches; this
covers the corners they rarely hit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_llm_fleet_events import scenario

from mtia_cluster.engine.llm import kernel as k
from mtia_cluster.engine.llm.cell import (
    EVERY,
    LEAD,
    LLMReplicaCell,
    counters_from,
    replica_values,
)
from mtia_cluster.engine.llm.fleetcounters import boundary_values, shard_counters
from mtia_cluster.engine.llm.jitglue import set_scalars
from mtia_cluster.engine.simulation import Simulation

NS = 10**9


def cells_of(replicas: int, tp: int) -> list[LLMReplicaCell]:
    sc = scenario({"accelerators": replicas * tp, "tp": tp}, [], "least_outstanding")
    sim = Simulation(sc)
    return [g.cell for s in sim.shards for g in s.groups]


@st.composite
def scalars(draw: Any, until: int) -> list[int]:
    """One replica's recorded scalars (the fields its counters read) near bound `until`."""
    s = [0] * k.NSCALAR
    s[k.LE_NS] = until + draw(st.sampled_from([-5, -1, 0, 0, 1, 3, 4 * NS]))
    s[k.LE_REM] = draw(st.sampled_from([0, 1, NS - 1, 123_456_789]))
    s[k.LASTMEM] = draw(st.integers(0, 1))
    for ns, rem in ((k.BUSY_NS, k.BUSY_REM), (k.MEM_NS, k.MEM_REM)):
        s[ns], s[rem] = draw(st.integers(0, 10**13)), draw(st.integers(0, NS - 1))
    s[k.KV_HI], s[k.KV_LO] = draw(st.integers(0, 2**60)), draw(st.integers(0, 2**31 - 1))
    s[k.HELD] = draw(st.integers(0, 10**6))
    for name in (k.IT, k.TOKENS, k.MAXUSED, k.MAXKV, k.PREEMPTED, k.QUERIED):
        s[name] = draw(st.integers(0, 10**7))
    return s


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), replicas=st.integers(1, 3), tp=st.sampled_from([1, 2]))
def test_boundary_values_equal_the_cells_counters(data: Any, replicas: int, tp: int) -> None:
    cells = cells_of(replicas, tp)
    bounds = [data.draw(st.integers(0, 3 * NS)) for _ in cells]
    for cell, bound in zip(cells, bounds, strict=True):
        cell.advance(bound)  # nothing submitted: only the bound moves
    adv = sorted(data.draw(st.lists(st.integers(0, 4 * NS), min_size=1, max_size=4)))
    top = 2**75
    base = [tuple(data.draw(st.integers(0, top)) for _ in range(3)) for _ in cells]
    snap = np.array([[data.draw(scalars(max(a, b))) for b in bounds] for a in adv], dtype=np.int64)
    got = boundary_values(cells, snap, np.array(adv, np.int64), base)  # type: ignore[arg-type]
    for q in range(len(adv)):
        values = []
        for i, cell in enumerate(cells):
            set_scalars(cell.scheduler, snap[q, i].tolist(), base[i])  # type: ignore[arg-type]
            until = max([bounds[i], *adv[: q + 1]])
            n = len(cell.accelerator_ids)
            every, lead = replica_values(
                cell.scheduler, n, until, cell.weight_bytes, cell.kv_bytes_per_token
            )
            assert got.every[q][:, i].tolist() == every, (q, i)
            assert got.ints[q][:, i].tolist() == lead[:1] + lead[2:], (q, i)
            assert got.kv[q, i] == lead[1], (q, i)
            values.append((every, lead))
        ids = np.concatenate([c.accelerator_ids for c in cells]).astype(np.int32)
        sizes = [len(c.accelerator_ids) for c in cells]
        shown = shard_counters(got, q, ids, sizes, slice(0, len(cells)))
        want = counters_from(ids, sizes, values)
        for name, col in want.columns().items():
            assert col.dtype == shown.columns()[name].dtype, name
            assert np.array_equal(col, shown.columns()[name]), name
        assert_layout(shown.columns(), values, sizes)


def assert_layout(cols: dict[str, np.ndarray], values: list[Any], sizes: list[int]) -> None:
    """Every accelerator of a replica shows its `EVERY` values, only the first its `LEAD`
    values (the others 0), replicas in order."""
    at = 0
    for (every, lead), size in zip(values, sizes, strict=True):
        for j, name in enumerate(EVERY):
            assert cols[name][at : at + size].tolist() == [every[j]] * size, name
        for j, name in enumerate(LEAD):
            assert cols[name][at : at + size].tolist() == [lead[j]] + [0] * (size - 1), name
        at += size
