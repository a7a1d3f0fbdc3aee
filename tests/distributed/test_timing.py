"""Ray's own costs from the spans (distributed/timing.py:ray_costs), on made-up timelines."""

from __future__ import annotations

import pytest

from mtia_cluster.distributed.timing import Timeline, ray_costs, shard_phases


def _timeline() -> Timeline:
    tl = Timeline()
    c = "coordinator"
    tl.spans += [
        (c, "start_shards", 0.0, 0.0, 0.0),
        ("s0", "init.build", 1.0, 2.0, 1.0),  # process start 1.0 s
        ("s1", "init.build", 1.5, 2.5, 1.0),
        ("s1", "init.read_trace", 2.5, 4.0, 1.5),
        # first round starts at 3.0: s1 is still constructing until 4.0
        (c, "calls.run_epoch", 3.0, 10.0, 0.0),
        ("s0", "call.run_epoch", 3.1, 8.0, 4.9),
        ("s1", "call.run_epoch", 4.2, 9.5, 5.3),  # critical: send 0.2, reply 0.5
        (c, "calls.close", 10.0, 11.0, 0.0),
        ("s0", "call.close", 10.1, 10.4, 0.3),  # critical: send 0.1, reply 0.6
        ("s1", "call.close", 10.05, 10.3, 0.25),
        (c, "calls.timings", 11.0, 11.05, 0.0),  # no shard span: all Ray
    ]
    return tl


def test_rounds_split_into_send_work_reply_and_barrier() -> None:
    got = ray_costs(_timeline())
    assert got.rounds == 3
    assert got.send_s == pytest.approx(0.2 + 0.1)
    assert got.reply_s == pytest.approx(0.5 + 0.6)
    assert got.unmatched_s == pytest.approx(0.05)
    assert got.calls_s == pytest.approx(0.3 + 1.1 + 0.05)
    assert got.init_wait_s == pytest.approx(1.0)  # 3.0 -> 4.0, s1's construction
    assert got.startup_exposed_s == 0.0  # both processes were up before the round
    assert got.barrier_s == pytest.approx((9.5 - 8.0) + (10.4 - 10.3))
    assert got.startup_per_process_s == pytest.approx([1.0, 1.5])


def test_a_process_still_starting_counts_as_start_up() -> None:
    tl = Timeline()
    tl.spans += [
        ("coordinator", "start_shards", 0.0, 0.0, 0.0),
        ("coordinator", "calls.run_epoch", 0.5, 5.0, 0.0),
        ("s0", "init.build", 2.0, 3.0, 1.0),
        ("s0", "call.run_epoch", 3.25, 4.5, 1.2),
    ]
    got = ray_costs(tl)
    assert got.startup_exposed_s == pytest.approx(1.5)
    assert got.init_wait_s == pytest.approx(1.0)
    assert got.send_s == pytest.approx(0.25)
    assert got.reply_s == pytest.approx(0.5)


def test_call_spans_are_not_shard_phases() -> None:
    phases = shard_phases(_timeline(), "s0")
    assert not any(k.startswith("call.") for k in phases)
    assert phases["init.build"] == (1.0, 1.0)
