"""Cost, energy and carbon of a fleet (issue #19; docs/planning.md).

`data` loads the sourced prices, per-host overheads and region grid figures
(configs/catalog/cost/); `power` turns them into per-accelerator rates (power when idle,
busy compute-bound and busy memory-bound, the host and network share, amortized capex,
PUE, price and carbon of energy) that `results.convert.DeviceTracker` applies to every
device interval, so every cost figure of a summary is a sum of device rows.
"""

from mtia_cluster.cost.data import CostData, Grid, load_cost_data

__all__ = ["CostData", "Grid", "load_cost_data"]
