"""Replay on a local Ray: same results as in-process, and a killed shard actor recovers."""

from __future__ import annotations

import pytest

from mtia_cluster.distributed.runner import ReplayOptions, replay

from .conftest import SCENARIO, assert_same_run
from .faults import KillingActors

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
    ("opt", "shard", "step"),
    [
        (ReplayOptions(epoch_ns=20 * 10**9), 1, 3),  # region epochs
        (ReplayOptions(placement="host", checkpoint_windows=200), 2, 500),  # windows
    ],
    ids=["region-epoch-kill", "host-window-kill"],
)
def test_killed_shard_restarts_from_checkpoint(
    local_ray, short_trace, reference, tmp_path, opt, shard, step
):
    import json

    faulty = KillingActors(shard, step)
    out = replay(SCENARIO, short_trace, tmp_path / "run", opt, transport=faulty)
    assert faulty.killed == [f"shard-{shard:04d}"]  # the fault was injected ...
    assert json.loads((out / "manifest.json").read_text())["shard_restarts"] == 1  # ... recovered
    assert_same_run(reference, out)  # no request lost, none duplicated, same figures


@pytest.mark.parametrize(
    "fault", [{"again": 1}, {"oom": 1}], ids=["killed-again", "memory-monitor"]
)
def test_shard_killed_again_during_its_recovery_recovers(
    local_ray, short_trace, reference, tmp_path, fault
):
    """The actor dies a second time right after Ray restarted it, while the coordinator
    resends the calls since its checkpoint: a second recovery, identical results. With
    `oom`, Ray reports the second death as OutOfMemoryError (its memory monitor killed the
    worker on a node near its memory limit): a lost actor like any other, not a traceback
    (the 360 M-request replay died of one while another process took the machine's memory)."""
    import json

    faulty = KillingActors(1, 3, **fault)
    opt = ReplayOptions(epoch_ns=20 * 10**9)
    out = replay(SCENARIO, short_trace, tmp_path / "run", opt, transport=faulty)
    assert faulty.killed == ["shard-0001"] * 2
    assert json.loads((out / "manifest.json").read_text())["shard_restarts"] == 2
    assert_same_run(reference, out)


def test_shard_past_its_restart_budget_fails_the_run_in_one_line(local_ray, short_trace, tmp_path):
    from mtia_cluster.distributed.runner import MAX_RESTARTS
    from mtia_cluster.errors import RunFailed

    faulty = KillingActors(1, 3, again=MAX_RESTARTS)
    opt = ReplayOptions(epoch_ns=20 * 10**9)
    with pytest.raises(RunFailed) as failed:
        replay(SCENARIO, short_trace, tmp_path / "run", opt, transport=faulty)
    assert "\n" not in str(failed.value) and "shard-0001" in str(failed.value)
    assert not (tmp_path / "run").exists()
    (partial,) = tmp_path.glob(".run.tmp-*")
    assert (partial / "_INCOMPLETE").exists()
