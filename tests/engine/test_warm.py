"""The kernel warm-up used by the README's setup commands runs every compiled path."""

from __future__ import annotations

from mtia_cluster.engine.warm import _scenario, warm_kernels


def test_warm_up_runs_and_covers_both_routers_and_a_failure() -> None:
    assert warm_kernels() > 0
    sc = _scenario("p2c")
    assert sc["router"]["policy"] == "p2c" and sc["events"][0]["kind"] == "fail"
