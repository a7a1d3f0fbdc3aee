"""Cells from a scenario: global cell, host and accelerator ids, and cell groups per shard.

Ids are assigned in config order (region, pool, cell), so they never depend on sharding.
R&R pools have one cell per host (simulated together per pool and shard by
:class:`RRHostGroup`); synthetic pools one :class:`SyntheticCell` per
``accelerators_per_replica`` accelerators; LLM pools one replica cell per ``tp x pp``
accelerators, built by ``engine/llm/factory.py``.

Two pool fields express a model version in engine terms: ``service_time_multiplier`` scales
every R&R batch's accelerator occupancy (PCIe in + device + PCIe out) or every synthetic
service time, and ``error_rate`` marks a seeded fraction of the pool's finished requests as
failed (:class:`InjectErrors`), each request's fate a function of (seed, request_id) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mtia_cluster.catalog import Catalog, Chip, Host
from mtia_cluster.config.scenario import PoolSpec, Scenario
from mtia_cluster.engine.cell import (
    STATUS_FAILED,
    STATUS_OK,
    Cell,
    CellSpec,
    Completed,
    DeviceCounters,
    RequestBatch,
)
from mtia_cluster.engine.group import CellGroup, SingleCell
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.rr import RRHostGroup, RRHostParams, ServiceTable
from mtia_cluster.engine.synthetic import SyntheticCell
from mtia_cluster.workloads import RRModel, SyntheticModel

if TYPE_CHECKING:
    from mtia_cluster.engine.llm.factory import PDContext


@dataclass
class Topology:
    """What every cell, host and accelerator id belongs to (struct of arrays)."""

    scenario: Scenario
    catalog: Catalog
    cell_region: list[int] = field(default_factory=list)
    cell_service: list[int] = field(default_factory=list)
    cell_pool: list[int] = field(default_factory=list)
    cell_host0: list[int] = field(default_factory=list)
    cell_acc0: list[int] = field(default_factory=list)
    acc_region: list[int] = field(default_factory=list)
    acc_pool: list[int] = field(default_factory=list)
    acc_chip: list[str] = field(default_factory=list)
    acc_host: list[int] = field(default_factory=list)
    acc_rack: list[int] = field(default_factory=list)
    pools: list[PoolSpec] = field(default_factory=list)
    pool_region: list[int] = field(default_factory=list)
    pool_acc0: list[int] = field(default_factory=list)  # first accelerator id of each pool
    hosts: int = 0
    racks: int = 0
    _rr: dict[int, tuple[RRHostParams, ServiceTable, float]] = field(default_factory=dict)
    _llm_costs: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    _fabric: Any = None  # engine.fabric.FabricSchedule, built on first use

    @property
    def fabric(self) -> Any:
        """The scale-out fabric's rates over the run (engine/fabric/; a function of the
        scenario only, so every process building cells computes the same)."""
        if self._fabric is None:
            from mtia_cluster.engine.fabric import build_schedule

            self._fabric = build_schedule(self)
        return self._fabric

    @property
    def accelerators(self) -> int:
        return len(self.acc_region)

    @property
    def cells(self) -> int:
        return len(self.cell_region)


def build_topology(scenario: Scenario, catalog: Catalog) -> Topology:
    """Ids for every cell, host and accelerator of `scenario` (no cell state yet)."""
    topology = Topology(scenario=scenario, catalog=catalog)
    services = scenario.services
    for r, region in enumerate(scenario.regions):
        for pool in region.pools:
            topology.pools.append(pool)
            topology.pool_region.append(r)
            _add_pool(topology, r, services.index(pool.service), pool)
    return topology


def _add_pool(topology: Topology, region: int, service: int, pool: PoolSpec) -> None:
    cat = topology.catalog
    platform = cat.platform(pool.platform)
    chip = cat.chip(platform.chip)
    p = len(topology.pools) - 1
    if pool.kind == "rr":
        topology._rr[p] = _rr_tables(cat, pool)
    per_host = platform.accelerators_per_host
    host0 = topology.hosts
    topology.pool_acc0.append(topology.accelerators)
    for first in range(0, pool.accelerators, pool.replica_size):
        topology.cell_region.append(region)
        topology.cell_service.append(service)
        topology.cell_pool.append(p)
        topology.cell_host0.append(host0 + first // per_host)
        topology.cell_acc0.append(topology.accelerators)
        topology.acc_region.extend([region] * pool.replica_size)
        topology.acc_pool.extend([p] * pool.replica_size)
        topology.acc_chip.extend([chip.name] * pool.replica_size)
        local_host = (first + np.arange(pool.replica_size)) // per_host
        topology.acc_host.extend((host0 + local_host).tolist())
        topology.acc_rack.extend((topology.racks + local_host // platform.hosts).tolist())
    hosts = -(-pool.accelerators // per_host)
    topology.hosts += hosts
    topology.racks += -(-hosts // platform.hosts)


def make_groups(topology: Topology, cell_ids: list[int]) -> list[CellGroup]:
    """Fresh cell groups for `cell_ids`: one RRHostGroup per set of R&R pools with the same
    host parameters (e.g. one pool replicated in every region: one group, so a window costs
    one pass, not one per pool), SingleCell otherwise. Hosts are independent, so how they
    are grouped never changes a result."""
    groups: list[CellGroup] = []
    by_kind: dict[tuple[Any, ...], list[int]] = {}
    for c in sorted(cell_ids):
        p = topology.cell_pool[c]
        if topology.pools[p].kind == "rr":
            by_kind.setdefault(_rr_kind(topology, p), []).append(c)
        else:
            groups.append(_with_errors(topology, c, SingleCell(c, _single_cell(topology, c))))
    for cells in by_kind.values():
        params, table, weight = topology._rr[topology.cell_pool[cells[0]]]
        size = topology.pools[topology.cell_pool[cells[0]]].replica_size
        acc = np.concatenate(
            [np.arange(topology.cell_acc0[c], topology.cell_acc0[c] + size) for c in cells]
        )
        group = RRHostGroup(
            params=params,
            table=table,
            host_ids=np.array([topology.cell_host0[c] for c in cells]),
            accelerator_ids=acc,
            cell_ids=np.array(cells),
            capacity_weight=weight,
            network=_embedding_net(topology, cells),
        )
        groups.append(_with_errors(topology, cells[0], group))
    return groups


def _embedding_net(topology: Topology, cells: list[int]) -> Any:
    """Remote embedding lookups of these R&R hosts over the fabric, when their pools shard
    the tables across hosts (engine/fabric/embedding.py), else None."""
    if all(topology.pools[topology.cell_pool[c]].embedding_hosts <= 1 for c in cells):
        return None
    from mtia_cluster.engine.fabric.embedding import embedding_net

    return embedding_net(topology, np.array(cells))


def _rr_kind(topology: Topology, p: int) -> tuple[Any, ...]:
    """What makes the hosts of R&R pool `p` behave alike: pools with equal keys share a
    group (same host parameters, occupancy table, router weight and injected errors)."""
    params, table, weight = topology._rr[p]
    pool = topology.pools[p]
    occupancy = (pool.model, pool.platform, pool.service_time_multiplier)
    return (params, table.table_ns.tobytes(), weight, occupancy, pool.replica_size, pool.error_rate)


def request_uniform(seed: int, request_id: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) per request, a function of (seed, request_id) only (splitmix64),
    so injected errors never depend on routing, sharding or batching."""
    x = np.asarray(request_id, dtype=np.int64).astype(np.uint64)
    x = x + np.uint64((seed * 0x9E3779B97F4A7C15 + StreamKind.INJECTED_ERRORS) % 2**64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


class InjectErrors:
    """A cell group whose finished requests fail with probability `error_rate` (status
    failed, timing unchanged: the request was served and answered with an error)."""

    def __init__(self, inner: CellGroup, error_rate: float, seed: int) -> None:
        self.inner, self.error_rate, self.seed = inner, error_rate, seed
        self.cell_ids = inner.cell_ids

    def submit(self, local: np.ndarray, batch: RequestBatch) -> None:
        self.inner.submit(local, batch)

    def advance(self, until_ns: int) -> Completed:
        done = self.inner.advance(until_ns)
        if len(done):
            hit = (done.status == STATUS_OK) & (
                request_uniform(self.seed, done.request_id) < self.error_rate
            )
            if hit.any():
                status = done.status.copy()
                status[hit] = STATUS_FAILED
                done = Completed(**{**done.columns(), "status": status})
        return done

    def outstanding(self) -> np.ndarray:
        return self.inner.outstanding()

    def capacity(self) -> np.ndarray:
        return self.inner.capacity()

    def device_counters(self) -> DeviceCounters:
        return self.inner.device_counters()

    def evict(self, local: np.ndarray, at_ns: int) -> tuple[RequestBatch, np.ndarray]:
        return self.inner.evict(local, at_ns)

    def quiet_until(self) -> int | None:
        """The inner group's (engine/shard.py): errors change no finish time."""
        quiet = getattr(type(self.inner), "quiet_until", None)
        return quiet(self.inner) if quiet is not None else None


def _with_errors(topology: Topology, cell: int, group: CellGroup) -> CellGroup:
    """`group` wrapped in InjectErrors when its pool injects errors."""
    rate = topology.pools[topology.cell_pool[cell]].error_rate
    return InjectErrors(group, rate, topology.scenario.seed) if rate > 0 else group


@dataclass(frozen=True)
class _Occupancy:
    """Server occupancy (PCIe in + device + PCIe out) in seconds per batch size.

    A module-level callable rather than a closure so that cell state pickles (Ray actors,
    checkpoints).
    """

    chip: Chip
    model: RRModel
    host: Host
    multiplier: float = 1.0  # the pool's service_time_multiplier

    def __call__(self, sizes: np.ndarray) -> np.ndarray:
        from mtia_cluster.perf import rr_batch_cost

        c = rr_batch_cost(self.chip, self.model, sizes, host=self.host)
        return np.asarray(c.pcie_in_s + c.device_s + c.pcie_out_s) * self.multiplier


def _rr_tables(cat: Catalog, pool: PoolSpec) -> tuple[RRHostParams, ServiceTable, float]:
    """Host parameters, occupancy table and router weight shared by a pool's hosts."""
    from mtia_cluster.perf import rr_batch_cost

    platform = cat.platform(pool.platform)
    chip, host, model = cat.chip(platform.chip), cat.host(platform.host), cat.model(pool.model)
    assert isinstance(model, RRModel)  # the pool's kind is its model's (config/scenario.py)
    occupancy = _Occupancy(chip, model, host, pool.service_time_multiplier)
    table = ServiceTable.build(occupancy, pool.max_items)
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
    weight = servers * pool.max_items / (table.table_ns[pool.max_items] / 1e9)  # items/s
    return params, table, weight


def _single_cell(topology: Topology, c: int) -> Cell:
    pool = topology.pools[topology.cell_pool[c]]
    sc, cat = topology.scenario, topology.catalog
    acc_ids = np.arange(topology.cell_acc0[c], topology.cell_acc0[c] + pool.replica_size)
    if pool.kind == "synthetic":
        model = cat.model(pool.model)
        assert isinstance(model, SyntheticModel)
        return SyntheticCell(
            accelerator_ids=acc_ids,
            host_id=topology.cell_host0[c],
            rng=entity_rng(sc.seed, StreamKind.CELL, c),
            distribution=model.distribution,
            mean_s=model.mean_s * pool.service_time_multiplier,
            cv=model.cv,
        )
    from mtia_cluster.engine.llm.factory import build_llm_cell

    per_host = cat.platform(pool.platform).accelerators_per_host
    hosts = tuple(
        range(
            topology.cell_host0[c],
            topology.cell_host0[c] + max(1, -(-pool.replica_size // per_host)),
        )
    )
    assert pool.llm is not None  # every LLM pool has its settings resolved at load
    spec = CellSpec(
        cell_id=c,
        region=topology.cell_region[c],
        service=topology.cell_service[c],
        model_name=pool.model,
        platform_name=pool.platform,
        accelerator_ids=tuple(int(a) for a in acc_ids),
        host_ids=hosts,
        seed=sc.seed,
        llm=pool.llm,
        file=sc.file,
        field_prefix=pool.field_prefix,
        catalog=cat,
    )
    from mtia_cluster.engine.fabric.cells import wrap_cell

    cell = build_llm_cell(spec, topology._llm_costs, _pd_context(topology, c, acc_ids))
    return wrap_cell(topology, c, cell, spec)


def _pd_context(topology: Topology, c: int, acc_ids: np.ndarray) -> PDContext | None:
    """A disaggregated replica's context: the window length, the service's router, and the
    scale-up domain of each accelerator (a pool's accelerators fill domains of the chip's
    ``scale_up_domain`` in id order from the pool's first one)."""
    p = topology.cell_pool[c]
    llm = topology.pools[p].llm
    if llm is None or llm.pd is None:
        return None
    from mtia_cluster.engine.llm.factory import PDContext

    sc = topology.scenario
    size = topology.catalog.chip(topology.acc_chip[int(acc_ids[0])]).scale_up_domain
    domains = (acc_ids - topology.pool_acc0[p]) // size
    return PDContext(
        report_interval_ns=sc.report_interval_ns,
        policy=sc.policy,
        router_weights=sc.router_weights,
        domains=tuple(int(d) for d in domains),
    )
