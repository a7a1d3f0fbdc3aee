"""Per-request network time (``network_ns``, docs/network.md "Per-request network time"):
the scale-out part of the iterations a request took part in, the KV transfer of a
disaggregated request over scale-out, plus the spill RTT; the same for every sharding."""

from __future__ import annotations

import numpy as np
import pytest
from test_fabric import ROOT, _scenario, _trace

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.fabric.comm import scale_out_comm_s
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.perf import llm_iteration_model

GB = 1e9


def test_low_load_network_time_is_the_hand_offs_of_its_iterations() -> None:
    """One request at a time (10 s apart): its prefill iteration hands its P prompt tokens'
    activations (P x 8192 x 2 B) to the next stage and each of its O - 1 decode iterations
    one token's, each a send/recv of the op model (latency + bytes / (bw x bw_fraction)) at
    the per-stripe rate (50 GB/s at 1:1, 12.5 at 4:1); computed here from the op model's
    parameters, not from the engine's table."""
    trace = _trace(n=30, gap_ns=1e10)
    c = load_catalog().chip("h100").op_params.send_recv_out
    prompt, out = trace.input_tokens.astype(float), trace.output_tokens.astype(float)
    rows = {}
    for sets, bw in (([], 50 * GB), (["fabric.oversubscription=4"], 12.5 * GB)):
        r = Simulation(_scenario(sets)).run(trace).requests
        r = r.take(np.argsort(r.request_id))
        hop = 8192 * 2.0 / (bw * c.bw_fraction)
        want = c.latency_s + prompt * hop + (out - 1) * (c.latency_s + hop)
        np.testing.assert_allclose(r.network_ns / 1e9, want, rtol=1e-5)
        assert np.all(r.network_ns <= r.finish_ns - r.start_ns)
        rows[bw] = r
    fast, slow = rows[50 * GB], rows[12.5 * GB]
    # at low load the slower fabric adds exactly its extra network time to the latency
    grown = (slow.finish_ns - slow.arrival_ns) - (fast.finish_ns - fast.arrival_ns)
    np.testing.assert_allclose(grown, slow.network_ns - fast.network_ns, atol=2)


def test_network_table_is_the_scale_out_part_of_the_cost_model() -> None:
    """Changing only the scale-out bandwidth changes the iteration's collectives exactly by
    the change of :func:`scale_out_comm_s` (so it holds every scale-out term of
    perf/llm.py and nothing else), for PP over scale-out and for EP a2a over scale-out."""
    from dataclasses import replace

    cat = load_catalog()
    chip = cat.chip("h100")
    tokens = np.array([1.0, 7.0, 300.0, 4096.0])
    for model, kw in (("llama-2-70b", {"tp": 8, "pp": 2}), ("mixtral-8x7b", {"tp": 2, "ep": 8})):
        its = [
            llm_iteration_model(replace(chip, scale_out_bytes_per_s=bw), cat.model(model), **kw)
            for bw in (50 * GB, 10 * GB)
        ]
        comm = [it.breakdown(tokens, 0 * tokens, 0 * tokens)["comm_s"] for it in its]
        net = [scale_out_comm_s(it, tokens) for it in its]
        assert np.all(net[0] > 0) and np.all(net[0] <= comm[0])
        np.testing.assert_allclose(comm[1] - comm[0], net[1] - net[0], rtol=1e-9)
    inside = llm_iteration_model(chip, cat.model("llama-2-70b"), tp=4, pp=2)
    assert not scale_out_comm_s(inside, tokens).any()  # 8 GPUs: one NVLink domain


def test_disaggregated_kv_transfer_over_scale_out_is_network_time() -> None:
    """llm-pd-pools: a request whose KV crosses scale-out spends the transfer (and its wait
    for the link) on the network, inside its TTFT; at 4:1 that time grows."""
    data = load_yaml(ROOT / "configs" / "scenarios" / "llm-pd-pools.yaml")
    trace = _trace(n=40, gap_ns=1e9)
    nets = []
    for over in (1, 4):
        data["fabric"] = {"oversubscription": over}
        r = Simulation(parse_scenario(dict(data), "llm-pd-pools.yaml")).run(trace).requests
        r = r.take(np.argsort(r.request_id))
        sent = r.output_tokens > 1
        assert np.all(r.network_ns[~sent] == 0)
        assert np.all(r.network_ns[sent] > 0)
        assert np.all(r.network_ns <= r.first_token_ns - r.start_ns)
        nets.append(r.network_ns)
    assert np.all(nets[1] >= nets[0]) and nets[1].sum() > nets[0].sum()


@pytest.mark.parametrize("shards", [2, [[0, 3], [1], [2]]])
def test_network_time_is_the_same_for_any_sharding(shards: object) -> None:
    """Busy enough that iterations batch several requests (their network time then counts
    the whole batch's hand-offs)."""
    sc, trace = _scenario(["fabric.oversubscription=4"]), _trace(n=80, gap_ns=5e7)
    base = Simulation(sc).run(trace).requests
    other = Simulation(sc, shards=shards).run(trace, coalesce_idle=False).requests
    np.testing.assert_array_equal(base.network_ns, other.network_ns)
    assert np.any(base.batch_size > 1) and np.all(base.network_ns > 0)
