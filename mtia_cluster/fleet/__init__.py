"""Fleet events over time: rollout plans and their region-level timeline simulation."""

from mtia_cluster.fleet.plan import Plan, load_plan, parse_plan
from mtia_cluster.fleet.run import run_rollout, write_outputs

__all__ = ["Plan", "load_plan", "parse_plan", "run_rollout", "write_outputs"]
