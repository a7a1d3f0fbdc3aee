"""The kernel warm-up used by the README's setup commands runs every compiled path."""

from __future__ import annotations

import sys
from pathlib import Path

from mtia_cluster.engine.warm import _scenario, warm_kernels, warm_llm_fleet, warm_llm_replica

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine_llm"))
from fleet_spans import counting_spans  # shared with tests/engine_llm/test_fleet_kernel.py


def test_warm_up_runs_and_covers_both_routers_and_a_failure() -> None:
    assert warm_kernels() > 0
    sc = _scenario("p2c")
    assert sc["router"]["policy"] == "p2c" and sc["events"][0]["kind"] == "fail"


def test_warm_up_runs_the_llm_replicas_compiled_loop_with_preemption_and_no_evict() -> None:
    evicting, reserving = warm_llm_replica()
    assert evicting.kernel is not None and reserving.kernel is not None  # compiled path
    assert evicting.preempted > 0 and reserving.preempted == 0
    assert len(evicting.finished) == len(reserving.finished) == 12


def test_warm_up_runs_the_compiled_llm_fleet() -> None:
    with counting_spans() as spans:
        out = warm_llm_fleet()
    assert spans[0] > 0, "the warm-up never ran the compiled fleet's span kernel"
    assert len(out.requests) == 40 and len(out.samples) > 2
