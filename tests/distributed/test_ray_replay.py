"""Replay on a local Ray: same results as in-process, and a killed shard actor recovers."""

from __future__ import annotations

import pytest

from mtia_cluster.distributed.runner import ReplayOptions, replay

from .conftest import SCENARIO, assert_same_run

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    from mtia_cluster.distributed.ray_env import connect

    connect(None, namespace="mtia-cluster-test", num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(short_trace, tmp_path_factory):
    return replay(
        SCENARIO,
        short_trace,
        tmp_path_factory.mktemp("ref") / "run",
        ReplayOptions(address="inprocess"),
    )


@pytest.mark.parametrize(
    "opt", [ReplayOptions(), ReplayOptions(placement="host")], ids=["region-actors", "host-actors"]
)
def test_ray_equals_inprocess(local_ray, short_trace, reference, tmp_path, opt):
    out = replay(SCENARIO, short_trace, tmp_path / "run", opt)
    assert_same_run(reference, out)


@pytest.mark.parametrize(
    "opt",
    [
        ReplayOptions(epoch_ns=20 * 10**9, fail_shard_at_window=(1, 3)),  # region epochs
        ReplayOptions(placement="host", checkpoint_windows=200, fail_shard_at_window=(2, 500)),
    ],
    ids=["region-epoch-kill", "host-window-kill"],
)
def test_killed_shard_restarts_from_checkpoint(local_ray, short_trace, reference, tmp_path, opt):
    import json

    out = replay(SCENARIO, short_trace, tmp_path / "run", opt)
    assert json.loads((out / "manifest.json").read_text())["shard_restarts"] == 1
    assert_same_run(reference, out)  # no request lost, none duplicated, same figures
