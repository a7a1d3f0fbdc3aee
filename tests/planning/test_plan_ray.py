"""`plan`'s confirming replays as Ray tasks give the in-process results, row for row."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtia_cluster.catalog import load_catalog
from mtia_cluster.planning.plan_file import load_plan
from mtia_cluster.planning.plan_search import run_plan

from .test_plan import PLAN

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def test_ray_tasks_equal_in_process(tmp_path: Path):
    from mtia_cluster.distributed.ray_env import parallel, ray_session
    from mtia_cluster.planning.plan_fleet import confirm

    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(PLAN))
    cat = load_catalog()
    plan = load_plan(path, cat)
    here = run_plan(plan, cat)  # no Ray connection: the same function in process
    assert parallel(confirm) is None
    with ray_session(None, namespace="mtia-cluster-plan-test", num_cpus=2):
        assert parallel(confirm) is not None  # the replays below are Ray tasks
        there = run_plan(plan, cat)
    assert here["replays"] == there["replays"] > 0
    for a, b in zip(here["candidates"], there["candidates"], strict=True):
        assert (a["label"], a["region"], a["passed"]) == (b["label"], b["region"], b["passed"])
        assert a.get("replay") == b.get("replay")
    assert here["winners"] == there["winners"]
