"""Per-request network time of the fabric's other flows (docs/network.md): remote embedding
lookups of a sharded R&R model and MoE all-to-all over scale-out.

* embeddings: configs/scenarios/fabric-embeddings.yaml (HC4 on 2 MTIA 2i racks) with the
  tables local, sharded over 2 and 3 hosts, and over 2 hosts with 50 Gb/s NICs; prints mean
  and p99 latency and network_ns, and the low-load check: a lone batch of b items waits
  path latency + b x E / N / (stripes x stripe rate), E the model's embedding bytes per item;
* moe: Mixtral 8x7B, tp=2 x ep=8 on HGX H100 (16 GPUs over two hosts) at 1:1 and 4:1; prints
  mean TTFT, network_ns, and the TTFT growth against 2 x moe_layers x all_to_all_bytes(P) /
  bw_fraction x (1/12.5 - 1/50) per GB/s.

    .venv/bin/python benchmarks/bench_network_time.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import platform
from typing import Any

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.paths import configs_dir
from mtia_cluster.perf.moe import all_to_all_bytes


def _ms(x: np.ndarray) -> str:
    return f"mean {x.mean() / 1e6:.3f} ms p99 {np.quantile(x, 0.99) / 1e6:.3f} ms"


def embeddings(n: int) -> None:
    rng = entity_rng(3, 2)
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 1e6)).astype(np.int64)
    tr = make_requests(arrival, items=rng.integers(50, 400, n).astype(np.int32))
    path = configs_dir() / "scenarios" / "fabric-embeddings.yaml"
    for hosts, gbit in ((1, None), (2, None), (3, None), (2, 50)):
        data: dict[str, Any] = load_yaml(path)
        data["regions"][0]["pools"][0]["embedding_hosts"] = hosts
        if gbit:
            data["fabric"] = {"nic_gbit_s": gbit}
        r = Simulation(parse_scenario(data, str(path))).run(tr).requests
        label = f"embedding_hosts={hosts}" + (f", {gbit} Gb/s NICs" if gbit else "")
        print(f"{label}: latency {_ms(r.finish_ns - r.arrival_ns)}; network {_ms(r.network_ns)}")
    e = load_catalog().model("hc4").embedding_bytes_per_sample
    print(f"  E = {e:,.0f} B per item; per item from the peer at N=2: {e / 2 / 100e9 * 1e9:.3f} ns")


def _moe(over: float) -> Any:
    pool = {"service": "chat", "model": "mixtral-8x7b", "platform": "hgx-h100"}
    pool |= {"accelerators": 32, "tp": 2, "ep": 8, "max_num_batched_tokens": 4096}
    doc = {"name": "moe", "seed": 1, "report_interval_ms": 5, "metrics_interval_ms": 1000}
    doc |= {"router": {"policy": "least_outstanding"}, "fabric": {"oversubscription": over}}
    doc |= {"regions": [{"name": "us-east", "pools": [pool]}]}
    return parse_scenario(doc, "moe.yaml")


def moe(n: int) -> None:
    rng = entity_rng(7, 2)
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * 2e9)).astype(np.int64)
    inp = np.clip(np.round(rng.lognormal(np.log(2000), 0.5, n)), 16, 4000).astype(np.int32)
    out = np.clip(np.round(rng.lognormal(np.log(60), 0.5, n)), 1, 400).astype(np.int32)
    tr = make_requests(arrival, items=0, input_tokens=inp, output_tokens=out)
    ttft = {}
    for over in (1, 4):
        r = Simulation(_moe(over)).run(tr).requests
        ttft[over] = float(np.mean(r.first_token_ns - r.arrival_ns)) / 1e6
        print(f"moe {over}:1: TTFT mean {ttft[over]:.3f} ms; network {_ms(r.network_ns)}")
    cat = load_catalog()
    model, eff = cat.model("mixtral-8x7b"), cat.chip("h100").op_params.send_recv_out.bw_fraction
    assert model.moe is not None
    size = all_to_all_bytes(inp.astype(float), model.moe.active_experts, model.hidden, 8, 2)
    pred = float(np.mean(2 * model.moe_layers * size / eff * (1 / 12.5e9 - 1 / 50e9))) * 1e3
    grown = ttft[4] - ttft[1]
    print(f"  TTFT +{grown:.3f} ms measured, +{pred:.3f} ms predicted ({grown / pred - 1:+.1%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=3000, help="R&R requests (MoE: 1/100)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    embeddings(args.requests)
    moe(max(10, args.requests // 100))


if __name__ == "__main__":
    main()
