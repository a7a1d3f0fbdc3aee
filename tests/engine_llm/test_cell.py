"""The LLM replica cell: Cell protocol, window independence, counters, factory errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.cell import (
    STATUS_OK,
    STATUS_REJECTED,
    Cell,
    CellSpec,
    Completed,
    make_requests,
)
from mtia_cluster.engine.llm.cell import LLMReplicaCell
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.errors import UserError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_cell(cost, limits, compact_after: int | None = None) -> LLMReplicaCell:
    return LLMReplicaCell(
        ReplicaScheduler(cost, limits),
        accelerator_ids=np.array([4, 5]),
        host_id=2,
        weight_bytes_per_accelerator=1e9,
        kv_bytes_per_token=100,
        compact_after=compact_after,
    )


def drive(cell: LLMReplicaCell, work, edges: list[int]) -> tuple[Completed, list]:
    """Submit each window's arrivals, advance to its end; return all rows and counters."""
    arrival, prompt, output, session = work
    batch = make_requests(
        arrival,
        input_tokens=prompt,
        output_tokens=output,
        items=0,
        session_id=session,
        request_id=np.arange(len(arrival)) + 100,
    )
    parts, counters, start = [], [], 0
    for until in edges:
        stop = int(np.searchsorted(arrival, until))
        cell.submit(batch.take(slice(start, stop)))
        start = stop
        got = cell.advance(until)
        assert np.all(got.finish_ns < until)
        parts.append(got)
        counters.append(cell.device_counters())
    return Completed.concat(parts), counters


@SETTINGS
@given(replicas(), workloads(), st.lists(st.integers(1, 3 * 10**10), max_size=10))
def test_window_by_window_equals_one_call(replica, work, cuts) -> None:
    cost, limits = replica
    end = 10**15  # far past every finish
    one, c_one = drive(make_cell(cost, limits), work, [end])
    many, c_many = drive(make_cell(cost, limits), work, [*sorted(set(cuts)), end])
    assert len(one) == len(work[0])  # every request exactly once
    order = np.argsort(many.request_id, kind="stable")
    for name, col in one.columns().items():
        np.testing.assert_array_equal(
            col[np.argsort(one.request_id)], getattr(many, name)[order], err_msg=name
        )
    for name, col in c_one[-1].columns().items():
        np.testing.assert_array_equal(col, getattr(c_many[-1], name), err_msg=name)
    busy = [int(c.busy_ns[0]) for c in c_many]
    assert busy == sorted(busy)  # cumulative, never going back


@SETTINGS
@given(
    replicas(),
    workloads(),
    st.lists(st.integers(1, 3 * 10**10), min_size=1, max_size=12),
    st.sampled_from([0, 1, 3]),
)
def test_forgetting_returned_requests_changes_nothing(replica, work, cuts, every) -> None:
    """Compaction (dropping finished, returned requests) keeps rows, counters and reports."""
    cost, limits = replica
    edges = [*sorted(set(cuts)), 10**16]
    keep, c_keep = drive(make_cell(cost, limits), work, edges)
    cell = make_cell(cost, limits, compact_after=every)
    drop, c_drop = drive(cell, work, edges)
    for name, col in keep.columns().items():
        np.testing.assert_array_equal(col, getattr(drop, name), err_msg=name)
    for a, b in zip(c_keep, c_drop, strict=True):
        for name, col in a.columns().items():
            np.testing.assert_array_equal(col, getattr(b, name), err_msg=name)
    assert cell.report().outstanding == 0
    if every == 0:  # compaction after every window: at the end nothing is left
        assert len(cell.scheduler.prompt) == len(cell.scheduler.finished) == 0


def test_protocol_statuses_and_counters() -> None:
    from standin import StandInModel

    from mtia_cluster.engine.llm.costs import probe_iteration_cost
    from mtia_cluster.engine.llm.limits import ReplicaLimits

    limits = ReplicaLimits(64, 8, 16, 512)
    cell = make_cell(probe_iteration_cost(StandInModel(kv_capacity_tokens=512), 64), limits)
    assert isinstance(cell, Cell)
    cell.submit(
        make_requests(
            np.array([0, 10, 20]),
            input_tokens=np.array([50, 600, 30]),
            output_tokens=np.array([5, 5, 1]),
            items=0,
        )
    )
    assert cell.report().outstanding == 3
    first = cell.advance(11)  # the too-long request is rejected at its arrival
    assert first.status.tolist() == [STATUS_REJECTED] and first.request_id.tolist() == [1]
    rest = cell.advance(10**13)
    assert rest.status.tolist() == [STATUS_OK, STATUS_OK]
    assert cell.report().outstanding == 0
    assert np.all(rest.accelerator_id == 4) and np.all(rest.host_id == 2)
    counters = cell.device_counters()
    assert counters.accelerator_id.tolist() == [4, 5]
    assert counters.work_units[0] == 50 + 5 - 1 + 30
    assert counters.busy_ns[0] == cell.scheduler.busy_as // 10**9 > 0
    assert counters.peak_memory_bytes[0] >= 1e9 + 6 * 16 * 100 / 2


def _scenario(pool: dict, model: str, chips: int):
    from mtia_cluster.config.scenario import parse_scenario

    p = {"service": "chat", "model": model, "platform": "hgx-h100", "accelerators": chips}
    p.setdefault("accelerators_per_replica", chips)
    return parse_scenario({"regions": [{"name": "r", "pools": [p | pool]}]}, "scenario.yaml")


def spec(pool: dict, model: str = "llama-2-7b", chips: int = 1) -> CellSpec:
    """The CellSpec of a one-replica pool with `pool`'s settings (validated at load)."""
    from mtia_cluster.catalog import load_catalog

    p = _scenario(pool, model, chips).regions[0].pools[0]
    assert p.llm is not None
    return CellSpec(
        cell_id=0,
        region=0,
        service=0,
        model_name=model,
        platform_name="hgx-h100",
        accelerator_ids=tuple(range(chips)),
        host_ids=(0,),
        seed=1,
        llm=p.llm,
        file="scenario.yaml",
        field_prefix=p.field_prefix,
        catalog=load_catalog(),
    )


def test_factory_builds_a_working_replica() -> None:
    from mtia_cluster.engine.llm.factory import build_llm_cell

    cache: dict = {}
    cell = build_llm_cell(spec({"max_num_batched_tokens": 512}, chips=2), cache)
    again = build_llm_cell(spec({"max_num_batched_tokens": 512}, chips=2), cache)
    assert isinstance(cell, LLMReplicaCell) and isinstance(again, LLMReplicaCell)
    assert again.scheduler.cost is cell.scheduler.cost
    cell.submit(
        make_requests(
            np.array([0, 10**6]),
            input_tokens=np.array([1000, 2000]),
            output_tokens=np.array([100, 10]),
            items=0,
        )
    )
    done = cell.advance(10**11)
    assert done.status.tolist() == [STATUS_OK, STATUS_OK]
    ttft_ms = (done.first_token_ns - done.arrival_ns) / 1e6
    assert np.all((ttft_ms > 1) & (ttft_ms < 1000))  # a 7B prefill on 2 H100s: tens of ms


@pytest.mark.parametrize(
    ("pool", "chips", "field"),
    [
        ({"tp": 2}, 1, "tp"),
        ({"max_num_seqs": 0}, 1, "max_num_seqs"),
        ({"max_num_batched_tokens": 8}, 1, "max_num_batched_tokens"),
        ({"block_size": "x"}, 1, "block_size"),
        ({"dtype": "fp4"}, 1, "dtype"),  # H100 has no FP4 compute
    ],
)
def test_llm_settings_are_refused_at_load(pool, chips, field) -> None:
    """Impossible serving settings fail when the scenario is read, not when cells are built."""
    with pytest.raises(UserError, match=rf"regions\[0\]\.pools\[0\]\.{field}"):
        _scenario(pool, "llama-2-7b", chips)


def test_factory_refuses_a_non_llm_model() -> None:
    from dataclasses import replace

    from mtia_cluster.engine.llm.factory import build_llm_cell

    with pytest.raises(UserError, match=r"pools\[0\]\.model: not an LLM"):
        build_llm_cell(replace(spec({}), model_name="lc1"))
