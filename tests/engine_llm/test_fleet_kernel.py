"""The compiled LLM fleet (engine/llm/fleet.py, fleetkernel.py) against the Python path.

A replay with the compiled window loop must give exactly what the Python window loop gives
(every request's row in emission order, the run's end, every device-counter sample), for
any number of replicas, shard placement, report and metrics intervals, scheduler limits,
trace density, span length (short spans hand the fleet back and forth between the two
paths), with requests rejected at arrival and KV pressure; and it must actually run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fleet_spans import counting_spans, python_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_lazy_windows import assert_same_run
from test_llm_fleet_events import llm_trace
from test_llm_fleet_events import scenario as events_scenario

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import Completed, RequestBatch, make_requests
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.shard import Shard
from mtia_cluster.engine.simulation import Simulation


def trace_of(seed: int, n: int, slow: int, huge: list[int]) -> RequestBatch:
    """`n` chat requests (bursty), `slow` x sparser; rows `huge` get prompts no replica
    can hold (rejected at arrival)."""
    tr = llm_trace(seed, n)
    prompt = tr.input_tokens.copy()
    prompt[[h % n for h in huge]] = 10**7
    return make_requests(
        tr.arrival_ns * slow, items=0, input_tokens=prompt, output_tokens=tr.output_tokens
    )


def run_pair(
    sc: Any, tr: RequestBatch, shards: Any, span_rows: int, must_run: bool = True
) -> tuple[RunOutput, ...]:
    """(compiled, Python) replays, and the emitted row batches of both, in order;
    `must_run`: the compiled fleet must have run (a window of more rows than `span_rows`
    runs the Python path)."""
    outs, emitted = [], []
    for compiled in (True, False):
        sim = Simulation(sc, shards=shards)
        rows: list[Completed] = []
        if compiled:
            with counting_spans(span_rows) as spans:
                sim.stream([(tr, None)], rows.append, lambda t, c: None)
            assert spans[0] > 0 or not must_run, "the compiled fleet never ran"
        else:
            with python_path():
                sim.stream([(tr, None)], rows.append, lambda t, c: None)
        emitted.append(Completed.concat(rows))
        with python_path() if not compiled else counting_spans(span_rows):
            outs.append(Simulation(sc, shards=shards).run(tr))
    return outs[0], outs[1], emitted[0], emitted[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replicas=st.integers(2, 6),
    seed=st.integers(0, 10**6),
    n=st.integers(1, 120),
    slow=st.sampled_from([1, 3, 20]),
    report_ms=st.sampled_from([1, 5, 20]),
    metrics_x=st.sampled_from([1, 7, 40]),
    limits=st.sampled_from(
        [
            {"max_num_batched_tokens": 2048},
            {"max_num_batched_tokens": 512, "max_num_seqs": 8},
            {"max_num_batched_tokens": 8192, "capacity_policy": "guaranteed_no_evict"},
        ]
    ),
    shards=st.sampled_from([1, 2, "split"]),
    span_rows=st.sampled_from([1, 4, 1 << 15]),
    huge=st.lists(st.integers(0, 10**6), max_size=3),
    tp=st.sampled_from([1, 1, 2]),
)
def test_compiled_fleet_equals_python_path(
    replicas: int,
    seed: int,
    n: int,
    slow: int,
    report_ms: int,
    metrics_x: int,
    limits: dict[str, Any],
    shards: Any,
    span_rows: int,
    huge: list[int],
    tp: int,
) -> None:
    """Rows (also as streamed, in order), end and every sample are identical (replicas of
    one or two accelerators: counters on each, the KV figures on the first)."""
    sc = events_scenario(
        {"accelerators": replicas * tp, "tp": tp, **limits},
        [],
        "least_outstanding",
        name="fleet-kernel",
        seed=5,
        report_ms=report_ms,
        metrics_ms=report_ms * metrics_x,
    )
    placement = [list(range(0, replicas, 2)), list(range(1, replicas, 2))]
    tr = trace_of(seed, n, slow, huge)
    compiled, python, streamed, reference = run_pair(
        sc, tr, placement if shards == "split" else shards, span_rows
    )
    assert_same_run(compiled, python)
    for name, col in reference.columns().items():
        assert np.array_equal(col, streamed.columns()[name]), name


def two_regions(policy: str, sizes: tuple[int, int], report_ms: int, metrics_ms: int) -> Any:
    """Regions "a" and "b", one chat pool each of `sizes` replicas (tp=1): two routers."""
    pool = {"service": "chat", "model": "llama-2-7b", "platform": "hgx-h100", "tp": 1}
    pools = [{**pool, "accelerators": n, "max_num_batched_tokens": 2048} for n in sizes]
    return parse_scenario(
        {
            "name": "fleet-two",
            "seed": 4,
            "report_interval_ms": report_ms,
            "metrics_interval_ms": metrics_ms,
            "router": {"policy": policy},
            "regions": [{"name": r, "pools": [p]} for r, p in zip("ab", pools, strict=True)],
        },
        file="fleet-two.yaml",
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(["round_robin", "round_robin", "least_outstanding"]),
    sizes=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    seed=st.integers(0, 10**6),
    n=st.integers(1, 120),
    slow=st.sampled_from([1, 3, 20]),
    report_ms=st.sampled_from([1, 5, 20]),
    metrics_x=st.sampled_from([1, 7, 40]),
    span_rows=st.sampled_from([1, 4, 1 << 15]),
    huge=st.lists(st.integers(0, 10**6), max_size=3),
    regions=st.lists(st.integers(0, 1), min_size=1, max_size=120),
    shards=st.sampled_from([1, 2]),
)
def test_compiled_fleet_of_two_routers_equals_python_path(
    policy: str,
    sizes: tuple[int, int],
    seed: int,
    n: int,
    slow: int,
    report_ms: int,
    metrics_x: int,
    span_rows: int,
    huge: list[int],
    regions: list[int],
    shards: int,
) -> None:
    """Round robin (each router's candidates in turn, continuing across windows and spans;
    windows run on to the last arrival's, routing reads no reports) and routers of a
    single candidate (``least_outstanding`` that reads no reports): rows (as streamed, in
    order), end and every sample as the Python path gives them."""
    sc = two_regions(policy, sizes, report_ms, report_ms * metrics_x)
    tr = trace_of(seed, n, slow, huge)
    tr.region[:] = [regions[i % len(regions)] for i in range(n)]
    # windows of blind routing run on to the last arrival's: more rows than a short span
    compiled, python, streamed, reference = run_pair(sc, tr, shards, span_rows, span_rows > n)
    assert_same_run(compiled, python)
    for name, col in reference.columns().items():
        assert np.array_equal(col, streamed.columns()[name]), name


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), policy=st.sampled_from(["p2c", "random"]))
def test_other_policies_keep_the_python_path(seed: int, policy: str) -> None:
    """Policies the fleet does not compile never reach it (and replay as before)."""
    sc = events_scenario({"accelerators": 4, "tp": 1}, [], policy, name="fleet-other", seed=5)
    tr = trace_of(seed, 60, 1, [])
    with counting_spans(1 << 15) as spans:
        out = Simulation(sc).run(tr)
    assert spans[0] == 0
    with python_path():
        assert_same_run(out, Simulation(sc).run(tr))


class _SeeingShard(Shard):
    """A shard that records every row its advances return (as a watched replay does)."""

    def __init__(self, shard: Shard, seen: list[Completed]) -> None:
        super().__init__(shard.groups)
        self.seen = seen

    def advance(self, inbox: Any, until_ns: int) -> Any:
        done, reports = super().advance(inbox, until_ns)
        self.seen.append(done)
        return done, reports


def test_a_shard_that_sees_advances_keeps_the_python_path() -> None:
    """A shard subclass that observes `advance` (early stopping's watched replay) must see
    every row, so the compiled fleet, which bypasses `advance`, must not run for it."""
    sc = events_scenario({"accelerators": 4, "tp": 1}, [], "least_outstanding", name="fleet-w")
    tr = trace_of(3, 80, 3, [])
    sim, seen = Simulation(sc), []
    sim.shards = [_SeeingShard(sim.shards[0], seen)]
    with counting_spans(1 << 15) as spans:
        out = sim.run(tr)
    assert spans[0] == 0
    assert sorted(Completed.concat(seen).request_id.tolist()) == sorted(tr.request_id.tolist())
    with python_path():
        assert_same_run(out, Simulation(sc).run(tr))
