"""A head and two worker nodes on one machine: shards spread over nodes, same results."""

from __future__ import annotations

import json

import pytest

from mtia_cluster.distributed.runner import ReplayOptions, replay

from .conftest import SCENARIO, assert_same_run

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


def test_three_node_cluster_gives_identical_results(short_trace, tmp_path):
    from ray.cluster_utils import Cluster

    reference = replay(SCENARIO, short_trace, tmp_path / "ref", ReplayOptions(address="inprocess"))
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="mtia-cluster-multinode", log_to_driver=False)
        out = replay(
            SCENARIO,
            short_trace,
            tmp_path / "run",
            ReplayOptions(placement="host", address=cluster.address),
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["nodes"] == 3
    assert manifest["shard_nodes"] >= 2  # SPREAD placed shard actors on several nodes
    assert_same_run(reference, out)
