"""Per-accelerator power, energy price, carbon and capex rates of a fleet (issue #19).

Every accelerator carries the rates `results.convert.DeviceTracker` turns into the cost
columns of its `devices` rows (docs/planning.md, "Cost model"):

* its own power: ``idle_w`` at zero load, ``busy_w`` while busy with compute-bound work
  (TDP), ``memory_w = idle + (TDP - idle) x memory_bound_activity`` while busy with
  memory-bound work. LLM cells count their memory-bound iterations exactly
  (``DeviceCounters.memory_bound_ns``); an R&R pool's batches are one or the other by the
  cost model's bound at the pool's batch limit (``perf.rr.RRCost.bound``), so its
  ``busy_w`` is already TDP or the memory-bound power;
* its share (1 / accelerators per host) of its host's non-accelerator power, which follows
  the accelerator's utilization between ``host_idle_fraction x power_w`` and ``power_w``, and
  of the network (switch ports, optics: constant);
* its share of the purchase price (chip + host + network share) amortized linearly over the
  platform's ``amortization_years``: ``capex_usd_per_s``;
* its region's PUE, electricity price and grid carbon intensity (``RegionSpec.grid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.cost.data import CostData, load_cost_data
from mtia_cluster.units import S_PER_YEAR


@dataclass(frozen=True)
class PoolRates:
    """The rates every accelerator of one pool shares (see module doc)."""

    idle_w: float
    busy_w: float
    memory_w: float
    host_idle_w: float
    host_busy_w: float
    capex_usd_per_s: float

    def mean_power_w(self, utilization: float, memory_bound: bool) -> float:
        """An accelerator and its host share at a steady `utilization` (W, before PUE): the
        power model of the `devices` rows (results/convert.py) averaged over time, busy at
        the memory-bound power when `memory_bound`."""
        busy_w = self.memory_w if memory_bound else self.busy_w
        acc_w = self.idle_w + (busy_w - self.idle_w) * utilization
        host_w = self.host_idle_w + (self.host_busy_w - self.host_idle_w) * utilization
        return acc_w + host_w


def rr_memory_bound(cat: Any, pool: Any) -> bool:
    """Whether an R&R pool's batches keep its accelerators memory-bound: at the pool's batch
    limit the cost model's memory time on the device (SRAM or off-chip traffic) exceeds its
    compute time (matrix or SIMD). Host and PCIe stages do not decide how the device works."""
    from mtia_cluster.perf import rr_batch_cost

    platform = cat.platform(pool.platform)
    chip, host = cat.chip(platform.chip), cat.host(platform.host)
    c = rr_batch_cost(chip, cat.model(pool.model), max(1, pool.max_items), host=host)
    memory = max(float(c.sram_s[0]), float(c.offchip_s[0]))
    return memory > max(float(c.compute_s[0]), float(c.simd_s[0]))


def pool_rates(cat: Any, data: CostData, pool: Any) -> PoolRates:
    """Per-accelerator rates of `pool` (a config.scenario.PoolSpec) from catalog and cost data."""
    platform = cat.platform(pool.platform)
    chip, host = cat.chip(platform.chip), cat.host(platform.host)
    cc, pc = data.chip(platform.chip), data.platform(pool.platform)
    per_host = float(platform.accelerators_per_host)
    memory_w = chip.idle_w + (chip.tdp_w - chip.idle_w) * cc.memory_bound_activity
    busy_w = memory_w if pool.kind == "rr" and rr_memory_bound(cat, pool) else chip.tdp_w
    host_idle = host.power_w * pc.host_idle_fraction + pc.network_power_w_per_host
    price = cc.price_usd + (pc.host_price_usd + pc.network_price_usd_per_host) / per_host
    return PoolRates(
        idle_w=chip.idle_w,
        busy_w=busy_w,
        memory_w=memory_w,
        host_idle_w=host_idle / per_host,
        host_busy_w=(host_idle + host.power_w * (1.0 - pc.host_idle_fraction)) / per_host,
        capex_usd_per_s=price / (pc.amortization_years * S_PER_YEAR),
    )


def device_rates(topology: Any, accelerators: np.ndarray) -> dict[str, np.ndarray]:
    """Rates of accelerators `accelerators` of an engine topology, as DeviceInfo columns."""
    data = load_cost_data()
    cat, scenario = topology.catalog, topology.scenario
    pools = [pool_rates(cat, data, p) for p in topology.pools]
    grids = [r.grid if r.grid is not None else data.grids["default"] for r in scenario.regions]
    acc = np.asarray(accelerators, dtype=np.int64).tolist()
    rows = [pools[topology.acc_pool[a]] for a in acc]
    regions = [grids[topology.acc_region[a]] for a in acc]
    out = {
        name: np.array([getattr(r, name) for r in rows], dtype=np.float64)
        for name in PoolRates.__dataclass_fields__
    }
    for name in ("pue", "usd_per_kwh", "gco2e_per_kwh"):
        out[name] = np.array([getattr(g, name) for g in regions], dtype=np.float64)
    return out
