"""MoE all-to-all over scale-out as fabric flows (engine/fabric/flows.py ``_all_to_all``;
docs/network.md): Mixtral 8x7B, tp=2 x ep=8 on HGX H100, so each replica's 16 GPUs span two
hosts (two NVLink domains) and half of every dispatch / combine crosses the fabric."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_fabric import _trace

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.perf.moe import all_to_all_bytes

GB = 1e9


def _scenario(over: float = 1) -> Any:
    pool = {"service": "chat", "model": "mixtral-8x7b", "platform": "hgx-h100"}
    pool |= {"accelerators": 32, "tp": 2, "ep": 8, "max_num_batched_tokens": 4096}
    return parse_scenario(
        {
            "name": "moe",
            "seed": 1,
            "report_interval_ms": 5,
            "metrics_interval_ms": 1000,
            "router": {"policy": "least_outstanding"},
            "regions": [{"name": "us-east", "pools": [pool]}],
            "fabric": {"oversubscription": over},
            "slo": {"chat": {"ttft_p99_ms": 2000, "tpot_p99_ms": 100}},
        },
        "moe.yaml",
    )


def test_each_domain_pair_carries_the_cross_domain_share_of_the_all_to_all() -> None:
    """Per replica token, the 8 GPUs of one domain send all_to_all_bytes(1) each per
    all-to-all, dispatch + combine in each of the 32 MoE layers; of the 7 other EP groups a
    GPU's group sends to, 4 are in the other domain: bytes per host pair = that x 4/7."""
    model = load_catalog().model("mixtral-8x7b")
    flows = Simulation(_scenario()).topology.fabric.flows
    assert len(flows) == 2 * 2 * 8  # 2 replicas x 2 ordered host pairs x 8 NIC stripes
    top_k = model.moe.active_experts
    per_gpu = float(all_to_all_bytes(1.0, top_k, model.hidden, 8, 2))
    want = per_gpu * 8 * 2 * model.moe_layers * 4 / 7
    np.testing.assert_allclose(flows.bytes_per_token, want, rtol=1e-12)
    assert set(zip(flows.src_host.tolist(), flows.dst_host.tolist(), strict=True)) == {
        (0, 1),
        (1, 0),
        (2, 3),
        (3, 2),
    }


def test_oversubscription_slows_the_prefill_all_to_all_as_predicted() -> None:
    """At low load a prompt of P tokens is one prefill iteration whose 2 x 32 all-to-alls
    move all_to_all_bytes(P) per GPU at the fitted send/recv efficiency; at 4:1 each stripe
    gets 12.5 GB/s instead of 50, so TTFT grows by 64 x bytes / eff x (1/12.5 - 1/50) / GB
    (mean over the trace) within 10%; the requests' network_ns grows too."""
    model = load_catalog().model("mixtral-8x7b")
    eff = load_catalog().chip("h100").op_params.send_recv_out.bw_fraction
    trace = _trace(n=30, gap_ns=2e9)
    fast = Simulation(_scenario(1)).run(trace).requests
    slow = Simulation(_scenario(4)).run(trace).requests
    measured = np.mean(
        (slow.first_token_ns - slow.arrival_ns) - (fast.first_token_ns - fast.arrival_ns)
    )
    size = all_to_all_bytes(
        trace.input_tokens.astype(float), model.moe.active_experts, model.hidden, 8, 2
    )
    predicted = np.mean(2 * model.moe_layers * size / eff * (1 / (12.5 * GB) - 1 / (50 * GB)))
    assert measured / 1e9 == pytest.approx(predicted, rel=0.10)
    assert np.all(slow.network_ns > fast.network_ns)


@pytest.mark.parametrize("shards", [2, [[1], [0]]])
def test_moe_rows_identical_for_any_sharding(shards: Any) -> None:
    sc, trace = _scenario(4), _trace(n=40, gap_ns=2e8)
    base = Simulation(sc).run(trace).requests
    other = Simulation(sc, shards=shards).run(trace, coalesce_idle=False).requests
    for k, v in base.columns().items():
        np.testing.assert_array_equal(v, other.columns()[k], err_msg=k)
