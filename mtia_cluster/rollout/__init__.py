"""Rollouts: a plan (plan.py), its region-level timeline (timeline.py), exact replays of the
moments that matter (moments.py, moment_replay.py, drill.py, on slices built by slice.py), and
the outputs (run.py). docs/rollout.md describes the model; docs/ARCHITECTURE.md the layout."""

from mtia_cluster.rollout.plan import Plan, load_plan, parse_plan
from mtia_cluster.rollout.run import run_rollout, write_outputs

__all__ = ["Plan", "load_plan", "parse_plan", "run_rollout", "write_outputs"]
