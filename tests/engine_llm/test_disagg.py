"""Prefill/decode disaggregation: window independence, composition of two exact instances."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_reference import ReferenceScheduler

from mtia_cluster.engine.cell import STATUS_OK, STATUS_REJECTED, Completed, make_requests
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.llm.limits import ReplicaLimits
from mtia_cluster.engine.llm.pd_routing import uniform_links
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.router import Router

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KV_BYTES = 1000


def make_cell(cost, limits, link_bytes_per_s: float) -> DisaggregatedCell:
    """One prefill instance, one decode instance with twice its KV, one link."""
    return pd_cell(cost, limits, link_bytes_per_s, 1, 1, "least_outstanding", 5 * 10**6)


def pd_cell(cost, limits, link: float, n_pre: int, n_dec: int, policy: str, step_ns: int):
    """`n_pre` prefill instances, `n_dec` decode instances with twice the KV each, every
    pair on a link of `link` bytes/s; inner routing every `step_ns`."""
    decode_limits = ReplicaLimits(
        limits.max_num_batched_tokens,
        limits.max_num_seqs,
        limits.block_size,
        limits.kv_capacity_tokens * 2,
        limits.prefix_caching,
    )
    router = Router(policy, np.arange(n_pre), np.ones(n_pre), entity_rng(1, 2, 0, 1), (3.0, 2.0))
    return DisaggregatedCell(
        [ReplicaScheduler(cost, limits) for _ in range(n_pre)],
        [ReplicaScheduler(cost, decode_limits) for _ in range(n_dec)],
        prefill_ids=[np.array([k]) for k in range(n_pre)],
        decode_ids=[np.array([n_pre + 2 * k, n_pre + 2 * k + 1]) for k in range(n_dec)],
        host_id=0,
        kv_bytes_per_token=KV_BYTES,
        links=uniform_links(n_pre, n_dec, link),
        router=router,
        report_interval_ns=step_ns,
    )


def drive(cell: DisaggregatedCell, work, edges: list[int]) -> Completed:
    arrival, prompt, output, session = work
    batch = make_requests(
        arrival, input_tokens=prompt, output_tokens=output, items=0, session_id=session
    )
    parts, start = [], 0
    for until in edges:
        stop = int(np.searchsorted(arrival, until))
        cell.submit(batch.take(slice(start, stop)))
        start = stop
        got = cell.advance(until)
        assert np.all(got.finish_ns < until)
        parts.append(got)
    out = Completed.concat(parts)
    return out.take(np.argsort(out.request_id, kind="stable"))


@SETTINGS
@given(
    replicas(),
    workloads(),
    st.lists(st.integers(1, 3 * 10**10), max_size=8),
    st.sampled_from([1e6, 1e9, 1e12]),
)
def test_disaggregated_cell_is_window_independent(replica, work, cuts, link) -> None:
    cost, limits = replica
    end = 10**16
    one = drive(make_cell(cost, limits, link), work, [end])
    many = drive(make_cell(cost, limits, link), work, [*sorted(set(cuts)), end])
    assert len(one) == len(work[0])
    for name, col in one.columns().items():
        np.testing.assert_array_equal(col, getattr(many, name), err_msg=name)
    ok = one.status == STATUS_OK
    assert np.all(one.first_token_ns[ok] > one.start_ns[ok])
    assert np.all(one.finish_ns[ok] >= one.first_token_ns[ok])


@SETTINGS
@given(replicas(), workloads(), st.sampled_from([1e6, 1e9, 1e12]))
def test_disaggregated_equals_composed_references(replica, work, link) -> None:
    """Prefill reference (one output token each), FIFO link, decode reference (prefilled);
    the first token reaches the user when its KV reaches the decode instance."""
    cost, limits = replica
    arrival, prompt, output, session = work
    cell = make_cell(cost, limits, link)
    got = drive(cell, work, [10**16])
    dec_lim = cell.decode[0].limits
    decodable = (output == 1) | (
        -(-(prompt + output - 1) // dec_lim.block_size) <= dec_lim.num_blocks
    )
    pre = ReferenceScheduler(cost, limits).run(
        arrival, np.where(decodable, prompt, 0), np.where(output >= 1, 1, 0), session
    )
    np.testing.assert_array_equal(got.status == STATUS_REJECTED, pre.rejected)
    send = [
        i
        for i in np.lexsort((np.arange(len(arrival)), pre.finish_ns))
        if not pre.rejected[i] and output[i] > 1
    ]
    free, dec_arrival = 0, []
    for i in send:
        free = max(int(pre.finish_ns[i]), free) + -(-int(prompt[i]) * KV_BYTES * 10**9 // int(link))
        dec_arrival.append(free)
    expected = pre.finish_ns.copy()
    first = pre.first_token_ns.copy()
    first[send] = dec_arrival
    np.testing.assert_array_equal(got.first_token_ns, first)
    if send:
        dec = ReferenceScheduler(cost, dec_lim).run(
            np.array(dec_arrival),
            prompt[send],
            output[send],
            np.full(len(send), -1),
            np.ones(len(send), bool),
        )
        expected[send] = dec.finish_ns
    np.testing.assert_array_equal(got.finish_ns, expected)


def test_factory_builds_disaggregated_cell() -> None:
    from mtia_cluster.engine.cell import CellSpec
    from mtia_cluster.engine.llm.factory import build_llm_cell
    from mtia_cluster.errors import UserError

    def spec(pool: dict) -> CellSpec:
        from test_cell import spec as cell_spec

        return cell_spec(pool, chips=8)

    cell = build_llm_cell(spec({"disaggregation": {"prefill_accelerators": 4}}))
    assert isinstance(cell, DisaggregatedCell)
    cell.submit(
        make_requests(
            np.array([0, 10**6]),
            input_tokens=np.array([3000, 500]),
            output_tokens=np.array([50, 1]),
            items=0,
        )
    )
    done = cell.advance(10**11)
    assert done.status.tolist() == [STATUS_OK, STATUS_OK]
    assert cell.transfer_ns_total > 0
    counters = cell.device_counters()
    assert counters.accelerator_id.tolist() == list(range(8))
    assert counters.work_units[0] == 3500 and counters.work_units[-1] > 0
    with pytest.raises(UserError, match=r"pools\[0\]\.disaggregation\.prefill_accelerators"):
        build_llm_cell(spec({"disaggregation": {"prefill_accelerators": 8}}))
