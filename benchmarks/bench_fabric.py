"""Fabric what-if: the same trace on fabric-pp (Llama-2-70B, TP=8 x PP=2 across two HGX H100
hosts) with a 1:1 vs 4:1 oversubscribed spine and 400 vs 100 Gb/s NICs.

Prints, per variant, the per-stripe rate the fabric gives, mean TTFT, output token throughput,
the peak rack-uplink utilization (links/), the requests' network time (network_ns), and the
back-of-the-envelope TTFT growth of docs/network.md ("Fabric"): at low load each prompt of
P tokens is one prefill iteration whose PP hand-off moves P x hidden x 2 bytes, so the
slower fabric adds
(pp - 1) x P x hidden x 2 / bw_fraction x (1/r_slow - 1/r_fast) seconds.

    .venv/bin/python benchmarks/bench_fabric.py [--requests 200] [--gap-ms 2000]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import pyarrow as pa

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.paths import configs_dir
from mtia_cluster.results.links import link_table
from mtia_cluster.results.run import device_tables

VARIANTS = {
    "1:1, 400G": [],
    "4:1, 400G": ["fabric.oversubscription=4"],
    "1:1, 100G": ["fabric.nic_gbit_s=100"],
}


def trace(n: int, gap_ms: float) -> object:
    rng = entity_rng(11, 2)
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * gap_ms * 1e6)).astype(np.int64)
    inp = np.clip(np.round(rng.lognormal(np.log(2000), 0.5, n)), 16, 4000).astype(np.int32)
    out = np.clip(np.round(rng.lognormal(np.log(100), 0.5, n)), 1, 1000).astype(np.int32)
    return make_requests(arrival, items=0, input_tokens=inp, output_tokens=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--gap-ms", type=float, default=2000.0, help="mean inter-arrival")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    tr = trace(args.requests, args.gap_ms)
    path = configs_dir() / "scenarios" / "fabric-pp.yaml"
    base_ttft, base_rate = None, None
    frac = load_catalog().chip("h100").op_params.send_recv_out.bw_fraction
    for name, sets in VARIANTS.items():
        sim = Simulation(load_scenario(path, sets))
        run = sim.run(tr)
        r = run.requests
        ttft = float(np.mean(r.first_token_ns - r.arrival_ns)) / 1e6
        tok_s = float(r.output_tokens.sum()) / ((r.finish_ns.max() - r.arrival_ns.min()) / 1e9)
        rate = float(sim.topology.fabric.flow_rate[0].min())
        devices = pa.concat_tables(device_tables(run))
        links = link_table(run.topology, run.regions, devices).to_pydict()
        up = [u for n, u in zip(links["link"], links["utilization"], strict=True) if "spine" in n]
        line = f"{name}: stripe {rate / 1e9:5.1f} GB/s  TTFT mean {ttft:8.2f} ms  "
        line += f"throughput {tok_s:7.1f} tok/s  peak uplink util {max(up):.2e}"
        net = r.network_ns / 1e6
        line += f"\n    network_ns mean {net.mean():.3f} ms, p99 {np.quantile(net, 0.99):.3f} ms"
        if base_ttft is None:
            base_ttft, base_rate = ttft, rate
        else:
            act = float(np.mean(tr.input_tokens)) * 8192 * 2.0
            predicted = act / frac * (1 / rate - 1 / base_rate) * 1e3
            measured = ttft - base_ttft
            line += f"\n    TTFT +{measured:.3f} ms measured, +{predicted:.3f} ms predicted"
            line += f" ({(measured / predicted - 1) * 100:+.1f}%)"
        print(line)


if __name__ == "__main__":
    main()
