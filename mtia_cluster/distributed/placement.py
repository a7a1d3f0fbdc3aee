"""Placement: which cells go to which shard (one shard = one Ray actor).

* ``region`` (default): one shard per region;
* ``rack``: one shard per rack (racks of each pool's platform, in pool order);
* ``host``: one shard per host with its accelerators (an LLM replica goes with its first host);
* ``shards=N``: N shards, cells dealt round-robin (the engine's own default grouping).

Results never depend on the placement (cells are exact inside, windows separate them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.engine.build import Fleet
from mtia_cluster.errors import UserError

PLACEMENTS = ("region", "rack", "host")


@dataclass(frozen=True)
class Topology:
    """Host and rack of every accelerator and cell (derived from the engine's fleet ids)."""

    acc_host: np.ndarray
    acc_rack: np.ndarray
    cell_host: np.ndarray
    cell_rack: np.ndarray
    cell_region: np.ndarray
    racks: int


def topology(fleet: Fleet) -> Topology:
    """Accelerators of a pool fill its hosts in order; hosts fill racks of the platform."""
    cat = fleet.catalog
    pool_of_acc = np.asarray(fleet.acc_pool, dtype=np.int64)
    acc_host = np.zeros(len(pool_of_acc), dtype=np.int64)
    acc_rack = np.zeros(len(pool_of_acc), dtype=np.int64)
    host_rack = np.zeros(fleet.hosts, dtype=np.int64)
    host0 = rack0 = 0
    for p, pool in enumerate(fleet.pools):
        platform = cat.platform(pool.platform)
        accs = np.flatnonzero(pool_of_acc == p)
        local_host = np.arange(len(accs)) // platform.accelerators_per_host
        acc_host[accs] = host0 + local_host
        acc_rack[accs] = rack0 + local_host // platform.hosts
        n_hosts = -(-len(accs) // platform.accelerators_per_host)
        host_rack[host0 : host0 + n_hosts] = rack0 + np.arange(n_hosts) // platform.hosts
        host0 += n_hosts
        rack0 += -(-n_hosts // platform.hosts)
    cell_host = np.asarray(fleet.cell_host0, dtype=np.int64)
    return Topology(
        acc_host,
        acc_rack,
        cell_host,
        host_rack[cell_host],
        np.asarray(fleet.cell_region, dtype=np.int64),
        rack0,
    )


def partition(
    fleet: Fleet, placement: str = "region", shards: int | None = None
) -> list[list[int]]:
    """Cell ids per shard for a placement (or `shards` round-robin groups)."""
    n = fleet.cells
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
    topo = topology(fleet)
    key = {"region": topo.cell_region, "rack": topo.cell_rack, "host": topo.cell_host}[placement]
    return [np.flatnonzero(key == k).tolist() for k in np.unique(key).tolist()]
