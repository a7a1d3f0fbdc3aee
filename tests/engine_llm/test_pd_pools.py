"""N:M prefill/decode pools: window independence for any cuts, every request exactly once,
KV never over-committed on a decode instance, decode choice by load and free KV, links by
scale-up domain and FIFO sharing, strict config."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import replicas, workloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_disagg import drive, pd_cell

from mtia_cluster.engine.cell import STATUS_OK
from mtia_cluster.engine.llm.pd_routing import (
    FABRIC_OUT,
    FABRIC_UP,
    DecodeChooser,
    PrefixView,
    link_table,
)

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POLICIES = [
    "least_outstanding",
    "round_robin",
    "random",
    "p2c",
    "weighted",
    "session_affinity",
    "prefix_affinity",
]
END = 10**16


@SETTINGS
@given(
    replicas(),
    workloads(),
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from(POLICIES),
    st.sampled_from([10**6, 10**8]),
    st.lists(st.integers(1, 3 * 10**10), max_size=6),
)
def test_pd_pools_are_window_independent_and_exact(
    replica, work, n_pre, n_dec, policy, step, cuts
) -> None:
    """Any cuts of advance give the same rows; every request once; time runs forward; no
    decode instance ever holds more KV blocks than it has. (p2c draws its pairs per routing
    call, so its cuts are window boundaries, as the engine's always are.)"""
    cost, limits = replica
    if policy == "p2c":
        cuts = [c // step * step for c in cuts if c >= step]
    one_cell = pd_cell(cost, limits, 1e9, n_pre, n_dec, policy, step)
    one = drive(one_cell, work, [END])
    many_cell = pd_cell(cost, limits, 1e9, n_pre, n_dec, policy, step)
    many = drive(many_cell, work, [*sorted(set(cuts)), END])
    for name, col in one.columns().items():
        np.testing.assert_array_equal(col, getattr(many, name), err_msg=name)
    assert sorted(one.request_id.tolist()) == list(range(len(work[0])))
    ok = one.status == STATUS_OK
    assert np.all(one.start_ns[ok] >= one.arrival_ns[ok])
    assert np.all(one.first_token_ns[ok] > one.start_ns[ok])
    assert np.all(one.finish_ns[ok] >= one.first_token_ns[ok])
    for cell in (one_cell, many_cell):
        for dec in cell.decode:
            assert dec.max_used_blocks <= dec.limits.num_blocks
            assert dec.outstanding == 0
        assert cell.report().outstanding == 0


@SETTINGS
@given(replicas(), workloads(), st.integers(2, 3), st.integers(2, 3))
def test_every_instance_serves_and_rows_name_the_prefill_instance(
    replica, work, n_pre, n_dec
) -> None:
    """Round robin spreads arrivals over the prefill instances in turn; a row's accelerator
    is its prefill instance's first."""
    cost, limits = replica
    cell = pd_cell(cost, limits, 1e9, n_pre, n_dec, "round_robin", 10**6)
    got = drive(cell, work, [END])
    per_instance = [len(p.prompt) for p in cell.prefill]
    assert sum(per_instance) == len(work[0])
    assert max(per_instance) - min(per_instance) <= 1
    assert set(got.accelerator_id.tolist()) <= set(range(n_pre))


def test_decode_chooser_takes_least_loaded_that_fits() -> None:
    c = DecodeChooser(3)
    c.refresh(load=[5, 1, 2], free=[100, 10, 50])
    assert c.choose(20) == 2  # instance 1 is less loaded but cannot hold 20 blocks
    assert c.choose(20) == 2  # 3 outstanding, 10 free: instance 0 (5) is more loaded
    assert c.choose(20) == 0  # 2 has 10 free left now
    assert c.choose(500) == 0  # none fits: the most free KV (80)
    assert c.load == [7, 1, 4] and c.free == [-420, 10, 10]


def test_prefix_view_holds_a_hash_while_any_instance_does() -> None:
    v = PrefixView()
    v.apply([(7, 1), (7, 1), (8, 1)])
    assert v.take() == [(7, 1), (8, 1)]
    v.apply([(7, -1)])
    assert v.take() == []
    v.apply([(7, -1), (8, -1)])
    assert v.take() == [(7, -1), (8, -1)]


def test_links_by_scale_up_domain_with_fitted_latency_and_fraction() -> None:
    from mtia_cluster.catalog import load_catalog

    chip = load_catalog().chip("h100")
    pre, dec = [np.array([0, 0])], [np.array([0, 0]), np.array([1, 1]), np.array([1])]
    links = link_table(chip, pre, dec, None)[0]
    assert [x.fabric for x in links] == [FABRIC_UP, FABRIC_OUT, FABRIC_OUT]
    up, out = chip.op_params.send_recv_up, chip.op_params.send_recv_out
    assert links[0].bytes_per_s == int(2 * chip.scale_up_bytes_per_s * up.bw_fraction)
    assert links[1].bytes_per_s == int(2 * chip.scale_out_bytes_per_s * out.bw_fraction)
    assert links[2].bytes_per_s == int(chip.scale_out_bytes_per_s * out.bw_fraction)  # 1 lane
    assert links[1].latency_ns == int(np.ceil(out.latency_s * 1e9))
    assert links[0].transfer_ns(10**9) < links[1].transfer_ns(10**9)
    forced = link_table(chip, pre, dec, "scale_out")[0]
    assert forced[0].fabric == FABRIC_OUT


def test_concurrent_transfers_out_of_one_prefill_instance_queue() -> None:
    """Two prompts finishing prefill together share their prefill instance's link: the
    second transfer starts when the first ends (FIFO), so its TTFT includes both."""
    from standin import StandInModel

    from mtia_cluster.engine.cell import make_requests
    from mtia_cluster.engine.llm.costs import probe_iteration_cost
    from mtia_cluster.engine.llm.limits import ReplicaLimits

    model = StandInModel(kv_capacity_tokens=100_000, flop_per_pair=5e5, kv_bytes_per_token=1000)
    cost = probe_iteration_cost(model, 4096)
    limits = ReplicaLimits(4096, 16, 16, 100_000)
    link = 1e6  # 1000 bytes/token: 1 ms per token
    cell = pd_cell(cost, limits, link, 1, 2, "round_robin", 10**6)
    batch = make_requests(
        np.array([0, 0]),
        input_tokens=np.array([100, 100]),
        output_tokens=np.array([5, 5]),
        items=0,
    )
    cell.submit(batch)
    got = cell.advance(10**12)
    got = got.take(np.argsort(got.request_id))
    pre = cell.prefill[0]
    assert pre.finish_ns[0] == pre.finish_ns[1]  # one prefill batch
    took = 100 * 1000 * 10**9 // int(link)
    assert got.first_token_ns.tolist() == [pre.finish_ns[0] + took, pre.finish_ns[0] + 2 * took]
    assert cell.transfer_ns_total == 2 * took
    assert [len(d.prompt) for d in cell.decode] == [1, 1]  # equal load: one each


def scenario_doc(disagg: dict[str, Any], **pool: Any) -> dict[str, Any]:
    return {
        "regions": [
            {
                "name": "r1",
                "pools": [
                    {
                        "service": "chat",
                        "model": "llama-2-7b",
                        "platform": "hgx-h100",
                        "accelerators": 16,
                        "disaggregation": disagg,
                        **pool,
                    }
                ],
            }
        ]
    }


def test_pd_pools_config_resolves_and_sizes_the_replica() -> None:
    from mtia_cluster.config.scenario import parse_scenario

    pool = (
        parse_scenario(
            scenario_doc(
                {"prefill": {"instances": 1, "tp": 2}, "decode": {"instances": 3, "tp": 2}}
            ),
            "s.yaml",
        )
        .regions[0]
        .pools[0]
    )
    assert pool.replica_size == 8 and pool.accelerators == 16
    assert pool.llm is not None and pool.llm.pd is not None
    assert (pool.llm.pd.prefill_instances, pool.llm.pd.decode_instances) == (1, 3)
    legacy = (
        parse_scenario(
            scenario_doc({"prefill_accelerators": 2}, accelerators_per_replica=4), "s.yaml"
        )
        .regions[0]
        .pools[0]
    )
    assert legacy.llm is not None and legacy.llm.pd is not None
    assert (legacy.llm.pd.prefill_tp, legacy.llm.pd.decode_tp) == (2, 2)


@pytest.mark.parametrize(
    ("disagg", "pool", "message"),
    [
        ({"prefill": {"instances": 1, "tp": 2}}, {}, "give prefill and decode together"),
        (
            {"prefill_accelerators": 1, "prefill": {"tp": 1}, "decode": {"tp": 1}},
            {},
            "either prefill_accelerators or prefill and decode",
        ),
        ({"prefill": {"tp": 0}, "decode": {"tp": 1}}, {}, "prefill.tp"),
        ({"prefill": {"tp": 1, "gpus": 2}, "decode": {"tp": 1}}, {}, "unknown key"),
        (
            {"prefill": {"tp": 2}, "decode": {"tp": 2}},
            {"accelerators_per_replica": 8},
            "must equal the prefill and decode pools' 4 accelerators",
        ),
        ({"prefill": {"tp": 2}, "decode": {"tp": 3}}, {}, "must divide"),
        ({"prefill": {"tp": 1}, "decode": {"tp": 1}, "link": "nvlink"}, {}, "scale_out"),
    ],
)
def test_pd_pools_config_errors_are_one_line(disagg, pool, message) -> None:
    from mtia_cluster.config.scenario import parse_scenario
    from mtia_cluster.errors import UserError

    with pytest.raises(UserError) as err:
        parse_scenario(scenario_doc(disagg, **pool), "s.yaml")
    text = str(err.value)
    assert "\n" not in text and "s.yaml" in text and "regions[0].pools[0]" in text
    assert message in text


PD_SCENARIO = """
name: pd-placement
seed: 4
report_interval_ms: 5
metrics_interval_ms: 1000
router: {policy: POLICY}
regions:
  - name: us-east
    pools:
      - service: chat
        model: llama-2-7b
        platform: hgx-h100
        accelerators: 24
        max_num_batched_tokens: 1024
        disaggregation:
          prefill: {instances: 2, tp: 1}
          decode: {instances: 5, tp: 2}
      - service: chat
        model: llama-2-7b
        platform: hgx-h100
        accelerators: 8
        tp: 2
  - name: eu-west
    pools:
      - service: chat
        model: llama-2-7b
        platform: hgx-h100
        accelerators: 16
        disaggregation:
          prefill: {instances: 3, tp: 2}
          decode: {instances: 1, tp: 2}
"""


@pytest.mark.parametrize("policy", ["least_outstanding", "random"])
def test_pd_replay_equals_the_engine_on_every_placement(tmp_path, policy) -> None:
    """Two regions with N:M replicas (2 x 12 GPUs, straddling NVLink domains of 8; 2 x 8)
    next to plain replicas: region, host, rack and 3-shard placements give identical rows,
    equal to the single-process engine; every request exactly once."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from distributed.conftest import assert_same_run, requests_of

    from mtia_cluster.config.scenario import load_scenario
    from mtia_cluster.distributed.runner import ReplayOptions, replay
    from mtia_cluster.engine.simulation import Simulation
    from mtia_cluster.engine.trace_input import load_trace
    from mtia_cluster.traces.generators.mix import generate_table
    from mtia_cluster.traces.io import write_trace

    scenario_file = tmp_path / "pd.yaml"
    scenario_file.write_text(PD_SCENARIO.replace("POLICY", policy))
    spec = {
        "name": "pd",
        "duration_s": 20,
        "regions": {"us-east": {"weight": 1.0}, "eu-west": {"weight": 0.7}},
        "services": [{"name": "chat", "kind": "llm", "rate_per_s": 30.0}],
    }
    table, meta = generate_table(spec, seed=3)
    trace = write_trace(table, tmp_path / "t.parquet", meta)
    placements = {
        "region": {},
        "host": {"placement": "host"},
        "rack": {"placement": "rack"},
        "shards3": {"shards": 3},
    }
    runs = {
        name: replay(scenario_file, trace, tmp_path / name, ReplayOptions(address="inprocess", **o))
        for name, o in placements.items()
    }
    for name in list(placements)[1:]:
        assert_same_run(runs["region"], runs[name])
    scenario = load_scenario(scenario_file)
    sim = Simulation(scenario)
    engine = sim.run(load_trace(trace, scenario)).requests
    ours = requests_of(runs["region"])
    assert ours["request_id"] == engine.request_id.tolist() == sorted(set(ours["request_id"]))
    assert len(ours["request_id"]) == table.num_rows
    for col in ("accelerator_id", "start_ns", "first_token_ns", "finish_ns", "batch_size"):
        assert ours[col] == getattr(engine, col).tolist(), col
    cells = [g.cell for shard in sim.shards for g in shard.groups]
    pd = [c for c in cells if hasattr(c, "transfers")]
    assert len(pd) == 4 and all(sum(c.transfers) > 0 for c in pd)
    assert sum(c.transfers[1] for c in pd) > 0  # some KV crossed NVLink domains (RDMA)


def test_cli_refuses_a_bad_pd_override_with_exit_2() -> None:
    """The shipped P:D scenario with a broken override: one line naming file, field and
    value, exit status 2, before anything runs."""
    from pathlib import Path

    from click.testing import CliRunner

    from mtia_cluster.cli.main import cli

    root = Path(__file__).resolve().parents[2]
    scenario = root / "configs/scenarios/llm-pd-pools.yaml"
    pool = "regions.0.pools.0.disaggregation"
    for override, message in (
        (f"{pool}.decode=null", "give prefill and decode together"),
        (f"{pool}.decode.instances=3", "must divide the pool's 16 accelerators"),
        (f"{pool}.prefill.tp=0", "prefill.tp"),
    ):
        trace = str(root / "traces/demo.parquet")
        res = CliRunner().invoke(
            cli, ["simulate", str(scenario), "--trace", trace, "--set", override]
        )
        assert res.exit_code == 2, res.output
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "llm-pd-pools.yaml" in lines[0] and message in lines[0]
