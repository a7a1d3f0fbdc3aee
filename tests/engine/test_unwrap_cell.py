"""`unwrap_cell`: the public way to reach a simulated cell under its FabricCell wrapper (the
P:D benchmark reads a disaggregated replica's own `stats()` through it)."""

from __future__ import annotations

from pathlib import Path

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.fabric.cells import FabricCell, unwrap_cell
from mtia_cluster.engine.llm.disagg import DisaggregatedCell
from mtia_cluster.engine.simulation import Simulation

SCENARIO = Path(__file__).resolve().parents[2] / "configs/scenarios/llm-pd-pools.yaml"


def test_unwrap_reaches_the_disaggregated_replica_under_the_fabric() -> None:
    sim = Simulation(load_scenario(SCENARIO, []))
    cells = [grp.cell for shard in sim.shards for grp in shard.groups]  # type: ignore[attr-defined]
    assert isinstance(cells[0], FabricCell)  # its KV transfers cross the fabric
    inner = unwrap_cell(cells[0])
    assert isinstance(inner, DisaggregatedCell) and inner is cells[0].inner
    assert {"transfers_scale_up", "transfers_scale_out"} <= set(inner.stats())
    assert unwrap_cell(inner) is inner  # a cell without a wrapper is itself
