"""Cells from a scenario: global cell, host and accelerator ids, and their cost tables.

Ids are assigned in config order (region, pool, cell), so they never depend on sharding.
R&R pools become one :class:`RRHostCell` per host; synthetic pools one
:class:`SyntheticCell` per ``accelerators_per_replica`` accelerators; LLM pools one replica
cell per ``tp x pp`` accelerators, built by ``engine/llm/factory.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.config.scenario import PoolSpec, Scenario
from mtia_cluster.engine.cell import Cell, CellSpec
from mtia_cluster.engine.rng import KIND_CELL, entity_rng
from mtia_cluster.engine.rr import RRHostCell, RRHostParams, ServiceTable
from mtia_cluster.engine.synthetic import SyntheticCell


@dataclass
class Fleet:
    """The cells of a scenario and what each id belongs to (struct of arrays)."""

    cells: list[Cell] = field(default_factory=list)
    cell_region: list[int] = field(default_factory=list)
    cell_service: list[int] = field(default_factory=list)
    cell_pool: list[int] = field(default_factory=list)
    acc_region: list[int] = field(default_factory=list)
    acc_pool: list[int] = field(default_factory=list)
    acc_chip: list[str] = field(default_factory=list)
    pools: list[PoolSpec] = field(default_factory=list)
    pool_region: list[int] = field(default_factory=list)
    hosts: int = 0

    @property
    def accelerators(self) -> int:
        return len(self.acc_region)


def build_fleet(scenario: Scenario, catalog: Any) -> Fleet:
    """Every cell of `scenario` (raises UserError for settings a cell cannot serve)."""
    fleet = Fleet()
    services = scenario.services
    llm_costs: dict[tuple[Any, ...], Any] = {}
    for r, region in enumerate(scenario.regions):
        for pool in region.pools:
            fleet.pools.append(pool)
            fleet.pool_region.append(r)
            _add_pool(fleet, scenario, catalog, r, services.index(pool.service), pool, llm_costs)
    return fleet


def _add_pool(
    fleet: Fleet,
    sc: Scenario,
    cat: Any,
    region: int,
    service: int,
    pool: PoolSpec,
    llm_costs: dict[tuple[Any, ...], Any],
) -> None:
    platform = cat.platform(pool.platform)
    chip = cat.chip(platform.chip)
    p = len(fleet.pools) - 1
    make = _rr_maker(cat, pool) if pool.kind == "rr" else None
    per_host = platform.accelerators_per_host
    host0 = fleet.hosts
    for first in range(0, pool.accelerators, pool.replica_size):
        cell_id = len(fleet.cells)
        acc_ids = np.arange(fleet.accelerators, fleet.accelerators + pool.replica_size)
        last = first + pool.replica_size - 1
        host_ids = tuple(range(host0 + first // per_host, host0 + last // per_host + 1))
        if pool.kind == "rr":
            assert make is not None
            cell: Cell = make(host_ids[0], acc_ids)
        elif pool.kind == "synthetic":
            model = cat.model(pool.model)
            cell = SyntheticCell(
                accelerator_ids=acc_ids,
                host_id=host_ids[0],
                rng=entity_rng(sc.seed, KIND_CELL, cell_id),
                distribution=model.distribution,
                mean_s=model.mean_s,
                cv=model.cv,
            )
        else:
            cell = _llm_cell(sc, cat, cell_id, region, service, pool, acc_ids, host_ids, llm_costs)
        fleet.cells.append(cell)
        fleet.cell_region.append(region)
        fleet.cell_service.append(service)
        fleet.cell_pool.append(p)
        fleet.acc_region.extend([region] * len(acc_ids))
        fleet.acc_pool.extend([p] * len(acc_ids))
        fleet.acc_chip.extend([chip.name] * len(acc_ids))
    fleet.hosts += -(-pool.accelerators // per_host)


def _rr_maker(cat: Any, pool: PoolSpec) -> Any:
    """A function (host_id, accelerator ids) -> RRHostCell sharing one service table."""
    from mtia_cluster.perf import rr_batch_cost

    platform = cat.platform(pool.platform)
    chip, host, model = cat.chip(platform.chip), cat.host(platform.host), cat.model(pool.model)

    def occupancy_s(sizes: np.ndarray) -> np.ndarray:
        c = rr_batch_cost(chip, model, sizes, host=host)
        return np.asarray(c.pcie_in_s + c.device_s + c.pcie_out_s)

    table = ServiceTable.build(occupancy_s, pool.max_items)
    cpu = float(rr_batch_cost(chip, model, 1, host=host).host_cpu_s_per_item)
    params = RRHostParams(
        sockets=host.sockets,
        cores_per_socket=host.cores_per_socket,
        accelerators_per_socket=host.accelerators_per_socket,
        group=model.accelerators,
        max_items=pool.max_items,
        max_wait_ns=pool.max_wait_ns,
        cpu_s_per_item=cpu,
    )
    servers = host.sockets * host.accelerators_per_socket // model.accelerators
    # capacity: items per second of the host at full batches
    weight = servers * pool.max_items / (table.table_ns[pool.max_items] / 1e9)

    def make(host_id: int, acc_ids: np.ndarray) -> RRHostCell:
        return RRHostCell(
            params=params,
            table=table,
            host_id=host_id,
            accelerator_ids=acc_ids,
            capacity_weight=weight,
        )

    return make


def _llm_cell(
    sc: Scenario,
    cat: Any,
    cell_id: int,
    region: int,
    service: int,
    pool: PoolSpec,
    acc_ids: np.ndarray,
    host_ids: tuple[int, ...],
    llm_costs: dict[tuple[Any, ...], Any],
) -> Cell:
    from mtia_cluster.engine.llm.factory import build_llm_cell

    spec = CellSpec(
        cell_id=cell_id,
        region=region,
        service=service,
        model_name=pool.model,
        platform_name=pool.platform,
        accelerator_ids=tuple(int(a) for a in acc_ids),
        host_ids=host_ids,
        seed=sc.seed,
        pool=pool.raw,
        file=sc.file,
        field_prefix=pool.field_prefix,
        catalog=cat,
    )
    return build_llm_cell(spec, llm_costs)
