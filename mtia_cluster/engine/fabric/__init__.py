"""The scale-out fabric: NIC / ToR / spine links, flows over them, max-min fair rates per
window, link events (docs/network.md, "Fabric")."""

from mtia_cluster.engine.fabric.maxmin import max_min_rates
from mtia_cluster.engine.fabric.schedule import FabricSchedule, build_schedule

__all__ = ["FabricSchedule", "build_schedule", "max_min_rates"]
