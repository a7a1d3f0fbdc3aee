"""Fleet events over time: rollout plans and their region-level timeline simulation."""

from mtia_cluster.rollout.plan import Plan, load_plan, parse_plan
from mtia_cluster.rollout.run import run_rollout, write_outputs

__all__ = ["Plan", "load_plan", "parse_plan", "run_rollout", "write_outputs"]
