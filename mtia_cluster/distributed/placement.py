"""Placement: which cells go to which shard (one shard = one Ray actor).

* ``region`` (default): one shard per region;
* ``rack``: one shard per rack (racks of each pool's platform, in pool order);
* ``host``: one shard per host with its accelerators (an LLM replica goes with its first host);
* ``shards=N``: N shards, cells dealt round-robin (the engine's own default grouping).

Results never depend on the placement (cells are exact inside, windows separate them).
"""

from __future__ import annotations

import numpy as np

from mtia_cluster.engine.topology import Topology
from mtia_cluster.errors import UserError

PLACEMENTS = ("region", "rack", "host")


def partition(
    topology: Topology, placement: str = "region", shards: int | None = None
) -> list[list[int]]:
    """Cell ids per shard for a placement (or `shards` round-robin groups)."""
    n = topology.cells
    if shards is not None:
        if shards < 1:
            raise UserError("must be >= 1", field="--shards", value=shards)
        k = min(shards, n)
        return [list(range(i, n, k)) for i in range(k)]
    if placement not in PLACEMENTS:
        raise UserError(
            f"unknown placement (known: {', '.join(PLACEMENTS)})",
            field="--placement",
            value=placement,
        )
    key = {  # the topology's own ids: a cell's rack is its first accelerator's
        "region": np.asarray(topology.cell_region),
        "rack": np.asarray(topology.acc_rack)[np.asarray(topology.cell_acc0)],
        "host": np.asarray(topology.cell_host0),
    }[placement]
    return [np.flatnonzero(key == k).tolist() for k in np.unique(key).tolist()]
