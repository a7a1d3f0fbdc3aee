"""Energy at zero load is idle power x time, hosts and network included (#19): in a replay
where only one pool gets requests, every other pool's groups draw exactly their idle power
(accelerators from the chip catalog, hosts at their idle fraction plus the network share),
x PUE, priced and converted to carbon with their region's figures, plus amortized capex."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.cost import load_cost_data
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import summarize
from mtia_cluster.units import J_PER_KWH, S_PER_YEAR

ROOT = Path(__file__).resolve().parents[2]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def test_idle_groups_draw_idle_power_including_hosts() -> None:
    scenario = load_scenario(ROOT / "configs" / "scenarios" / "multi-region.yaml")
    n = 2000  # R&R requests to us-east only, 0.5 s
    arrival = np.arange(n, dtype=np.int64) * 250_000
    requests = make_requests(arrival, items=np.full(n, 64, np.int32))
    run = Simulation(scenario).run(requests)
    summary = summarize(run).summary
    cat, data = load_catalog(), load_cost_data()
    pools = {(r.name, p.service): (r, p) for r in scenario.regions for p in r.pools}
    idle_groups = [g for g in summary["groups"] if g["completed"] == 0]
    assert {(g["region"], g["service"]) for g in idle_groups} == {
        ("us-east", "llm-chat"),
        ("eu-west", "rr-ranking"),
        ("eu-west", "llm-chat"),
    }
    for g in idle_groups:
        region, pool = pools[(g["region"], g["service"])]
        platform = cat.platform(pool.platform)
        chip, host = cat.chip(platform.chip), cat.host(platform.host)
        pc = data.platforms[pool.platform]
        hosts = pool.accelerators / platform.accelerators_per_host
        acc_w = pool.accelerators * chip.idle_w
        host_w = hosts * (host.power_w * pc.host_idle_fraction + pc.network_power_w_per_host)
        assert g["utilization"] == 0.0 and host_w > 0
        assert _close(g["avg_power_w"], acc_w)
        span_s = g["energy_j"] / acc_w
        assert _close(g["host_energy_j"], host_w * span_s)
        grid = data.grids[region.name]
        kwh = (acc_w + host_w) * grid.pue * span_s / J_PER_KWH
        assert _close(g["facility_energy_kwh"], kwh)
        assert _close(g["energy_cost_usd"], kwh * grid.usd_per_kwh)
        assert _close(g["co2e_g"], kwh * grid.gco2e_per_kwh)
        price = pool.accelerators * data.chips[platform.chip].price_usd + hosts * (
            pc.host_price_usd + pc.network_price_usd_per_host
        )
        assert _close(g["capex_usd"], price / (pc.amortization_years * S_PER_YEAR) * span_s)
