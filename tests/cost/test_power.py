"""Per-pool power and capex rates (cost/power.py, #19): which busy power a pool draws and
its host, network and price shares, from the catalog and the cost data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cost import load_cost_data
from mtia_cluster.cost.power import pool_rates
from mtia_cluster.units import S_PER_YEAR


@dataclass(frozen=True)
class Pool:
    """The PoolSpec fields pool_rates reads."""

    model: str
    platform: str
    kind: str
    max_items: int


@pytest.mark.parametrize(
    ("model", "kind", "max_items", "memory_bound"),
    [
        ("hc1", "rr", 2048, False),  # dense-heavy ranking: matrix time dominates
        ("rmc2", "rr", 1024, True),  # embedding-dominated: off-chip traffic dominates
        ("llama-2-7b", "llm", 0, False),  # LLM pools split per iteration (counters)
    ],
)
def test_pool_rates(model: str, kind: str, max_items: int, memory_bound: bool) -> None:
    cat, data = load_catalog(), load_cost_data()
    platform = cat.platform("mtia-2i-rack")
    chip, host = cat.chip("mtia-2i"), cat.host(platform.host)
    cc, pc = data.chips["mtia-2i"], data.platforms["mtia-2i-rack"]
    r = pool_rates(cat, data, Pool(model, "mtia-2i-rack", kind, max_items))
    memory_w = chip.idle_w + (chip.tdp_w - chip.idle_w) * cc.memory_bound_activity
    assert math.isclose(r.memory_w, memory_w) and chip.idle_w < r.memory_w < chip.tdp_w
    assert r.busy_w == (memory_w if memory_bound else chip.tdp_w)
    per = platform.accelerators_per_host
    idle_host = host.power_w * pc.host_idle_fraction + pc.network_power_w_per_host
    assert math.isclose(r.host_idle_w * per, idle_host)
    assert math.isclose(r.host_busy_w * per, host.power_w + pc.network_power_w_per_host)
    usd = cc.price_usd + (pc.host_price_usd + pc.network_price_usd_per_host) / per
    assert math.isclose(r.capex_usd_per_s * pc.amortization_years * S_PER_YEAR, usd)
