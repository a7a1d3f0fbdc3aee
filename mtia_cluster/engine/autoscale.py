"""Autoscaling inside a replay: replicas of a (region, service) added and removed by a policy.

Scenario syntax: ``autoscaling: {<service>: {...}}`` (config/models.py ``Autoscaling``). Every
cell of a (region, service) is a provisioned replica; at any time each is

* ``off``: not routed to, holds no work (its accelerators draw nothing in the autoscale
  accounting; the ``devices`` rows still charge them idle power, see results/autoscale.py);
* ``starting``: chosen by a scale-up, not yet routable until its start-up time has passed:
  the weights' bytes over the slowest of storage (the host NIC by default), host memory and
  PCIe (:func:`startup_ns`, from the catalog), plus the policy's ``runtime_init_s``;
* ``running``: routable (unless a fleet event fails or drains it);
* ``draining``: chosen by a scale-down; takes no new request, finishes those it holds, and is
  off once its load report shows none.

A policy is a function ``ScaleContext -> (desired replicas, policy state)``, as Ray Serve's
custom autoscaling policies are. It is evaluated only at window boundaries that are multiples
of its ``interval_s`` (rounded up to the report interval), on what is visible there: the
cells' load reports of that boundary (requests in flight) and the device counters of the
region's own cells (busy time). A region shard holds every cell of its regions, so it makes
the same decisions as one process: results are identical for any shard placement.
Transitions are applied through the window loop's event hooks (``autoscale_hooks``), after
the scenario's fleet events of the same boundary, and set the routers' available cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.config.models import TARGET_ONGOING_REQUESTS, Autoscaling
from mtia_cluster.engine.cell import DeviceCounters, RequestBatch
from mtia_cluster.engine.windows import EventHooks
from mtia_cluster.units import GB, NS_PER_S

OFF, STARTING, RUNNING, DRAINING = 0, 1, 2, 3
_NO_ROWS = RequestBatch.empty()


@dataclass(frozen=True)
class ScaleContext:
    """What a policy sees at a decision boundary (Ray Serve's AutoscalingContext, reduced)."""

    t_ns: int
    running: int  # replicas routable or failed (not starting, draining or off)
    starting: int
    ongoing_requests: int  # requests in flight on the running replicas (load reports)
    busy_fraction: float  # of the running and draining replicas' accelerators, last interval
    min_replicas: int
    max_replicas: int
    config: Autoscaling
    state: dict[str, Any]  # what the policy returned last time


Policy = Callable[[ScaleContext], tuple[int, dict[str, Any]]]


def target_policy(ctx: ScaleContext) -> tuple[int, dict[str, Any]]:
    """Replicas for the target: ``ceil(ongoing / target_ongoing_requests)`` (Ray Serve) or
    ``ceil(running x busy / target_utilization)`` (the Kubernetes HPA rule), clamped to
    [min, max]; no change within a cooldown of the last change (scale-up and scale-down
    cooldowns apply to the direction of the new change)."""
    cfg, current = ctx.config, ctx.running + ctx.starting
    if cfg.target_utilization is not None:
        want = ctx.running * ctx.busy_fraction / cfg.target_utilization
    else:
        want = ctx.ongoing_requests / (cfg.target_ongoing_requests or TARGET_ONGOING_REQUESTS)
    desired = min(max(math.ceil(want - 1e-9), ctx.min_replicas), ctx.max_replicas)
    last = int(ctx.state.get("last_change_ns", 0))
    cooldown = cfg.upscale_cooldown_s if desired > current else cfg.downscale_cooldown_s
    if desired != current and ctx.t_ns - last < round(cooldown * NS_PER_S):
        desired = current
    state = {**ctx.state, "last_change_ns": ctx.t_ns} if desired != current else ctx.state
    return desired, state


def startup_ns(topology: Any, cell: int, config: Autoscaling) -> int:
    """Start-up time of a cell: its weights over the slowest of storage (``storage_gb_s``,
    default the host's NIC bandwidth, catalog ``nic_gb_s_per_socket`` x sockets), host
    memory (catalog ``dram_bandwidth_gb_s_per_socket`` x sockets, every copy read once) and
    PCIe (catalog chip ``host_link`` bandwidth, each accelerator loading its share in
    parallel), plus ``runtime_init_s``. R&R hosts load one copy of the model per shard group;
    synthetic models have no weights."""
    cat = topology.catalog
    pool = topology.pools[topology.cell_pool[cell]]
    platform = cat.platform(pool.platform)
    host, chip, model = cat.host(platform.host), cat.chip(platform.chip), cat.model(pool.model)
    if pool.kind == "llm":
        one_copy, copies = model.weight_bytes(pool.llm.dtype if pool.llm else None), 1
    elif pool.kind == "rr":
        one_copy, copies = model.size_bytes, pool.replica_size // model.accelerators
    else:
        one_copy, copies = 0.0, 1
    storage = config.storage_gb_s * GB if config.storage_gb_s else None
    storage = storage or host.nic_bytes_per_s_per_socket * host.sockets
    seconds = max(
        one_copy / storage,
        copies * one_copy / (host.dram_bandwidth_bytes_per_s_per_socket * host.sockets),
        copies * one_copy / pool.replica_size / chip.host_link_bytes_per_s,
    )
    return round((seconds + config.runtime_init_s) * NS_PER_S)


@dataclass
class ScaledGroup:
    """One (region, service)'s replicas and its policy's state."""

    region: str
    service: str
    key: tuple[int, int]  # (region, service) indices: the routing plane's router key
    config: Autoscaling
    cells: np.ndarray  # global cell ids, sorted
    accelerators: np.ndarray  # accelerators per cell
    idle_w: np.ndarray  # idle power of each cell's accelerators, summed
    startup_ns: np.ndarray
    acc_ids: list[np.ndarray]  # accelerator ids of each cell
    state: np.ndarray  # OFF | STARTING | RUNNING | DRAINING per cell
    ready_ns: np.ndarray
    max_replicas: int
    next_decision_ns: int = 0
    policy_state: dict[str, Any] = field(default_factory=dict)
    busy_prev_ns: int = 0  # cumulative busy time of the group's accelerators, last decision
    t_prev_ns: int = 0
    last_row: tuple[int, ...] | None = None

    def count(self, kind: int) -> int:
        return int(np.count_nonzero(self.state == kind))

    def row(self, t_ns: int, desired: int | None) -> dict[str, Any] | None:
        """A timeline row when the replica counts changed since the last one."""
        counts = tuple(self.count(k) for k in (RUNNING, STARTING, DRAINING, OFF))
        if counts == self.last_row:
            return None
        self.last_row = counts
        off = self.state == OFF
        return {
            "at_ns": int(t_ns),
            "region": self.region,
            "service": self.service,
            "running": counts[0],
            "starting": counts[1],
            "draining": counts[2],
            "off": counts[3],
            "desired": desired if desired is not None else counts[0] + counts[1],
            "off_accelerators": int(self.accelerators[off].sum()),
            "off_idle_power_w": float(self.idle_w[off].sum()),
        }


Counters = Callable[[], DeviceCounters]


@dataclass
class Autoscaler:
    """Every autoscaled (region, service) of a fleet (or of a region shard's regions)."""

    groups: list[ScaledGroup]
    step_ns: int  # the report interval: decisions and readiness land on its multiples
    policy: Policy = target_policy
    started: bool = False
    _next_ns: int | None = 0  # cached next_boundary (asked every window)
    log: list[dict[str, Any]] = field(default_factory=list)

    def next_boundary(self) -> int | None:
        """The next boundary with a decision or a replica becoming ready (None: none)."""
        return self._next_ns if self.groups else None

    def _due_ns(self, g: ScaledGroup) -> int:
        """The group's next boundary: its next decision or a replica becoming ready (each
        group by its own times only, so a region shard sees the same boundaries)."""
        if not self.started:
            return 0
        t = g.next_decision_ns
        if g.count(STARTING):
            t = min(t, int(g.ready_ns[g.state == STARTING].min()))
        return -(-t // self.step_ns) * self.step_ns

    def apply_due(
        self, t_ns: int, plane: Any, failed: np.ndarray, drained: np.ndarray, counters: Counters
    ) -> None:
        """Transitions due at boundary `t_ns`, then the routers' available cells (a cell is
        routed to when running and neither failed nor drained by a fleet event)."""
        due = [self._due_ns(g) <= t_ns for g in self.groups]
        self.started = True
        for g, is_due in zip(self.groups, due, strict=True):
            if is_due:
                self._transitions(g, t_ns, plane, counters)
            up = (g.state == RUNNING) & ~failed[g.cells] & ~drained[g.cells]
            router = plane.routers[g.key]
            router.set_available(g.cells[up], True)
            router.set_available(g.cells[~up], False)
        self._next_ns = min(self._due_ns(g) for g in self.groups)

    def _transitions(self, g: ScaledGroup, t_ns: int, plane: Any, counters: Counters) -> None:
        """Replicas ready or drained by `t_ns`; the policy's decision when one is due."""
        g.state[(g.state == STARTING) & (g.ready_ns <= t_ns)] = RUNNING
        g.state[(g.state == DRAINING) & (plane.outstanding[g.cells] == 0)] = OFF
        desired = None
        if t_ns >= g.next_decision_ns:
            acc_busy = None
            if g.config.target_utilization is not None:
                acc_busy = _busy_by_accelerator(counters(), len(plane.topology.acc_region))
            desired = self._decide(g, t_ns, plane, acc_busy)
            g.next_decision_ns = t_ns + round(g.config.interval_s * NS_PER_S)
        row = g.row(t_ns, desired)
        if row is not None:
            self.log.append(row)

    def _decide(self, g: ScaledGroup, t_ns: int, plane: Any, acc_busy: np.ndarray | None) -> int:
        running, starting = g.state == RUNNING, g.state == STARTING
        busy_fraction = 0.0
        if acc_busy is not None:
            on = g.state >= RUNNING
            busy = int(sum(int(acc_busy[a].sum()) for a in g.acc_ids))
            span = (t_ns - g.t_prev_ns) * int(g.accelerators[on].sum())
            busy_fraction = (busy - g.busy_prev_ns) / span if span > 0 else 0.0
            g.busy_prev_ns, g.t_prev_ns = busy, t_ns
        ctx = ScaleContext(
            t_ns=t_ns,
            running=int(running.sum()),
            starting=int(starting.sum()),
            ongoing_requests=int(plane.outstanding[g.cells[running]].sum()),
            busy_fraction=busy_fraction,
            min_replicas=g.config.min_replicas,
            max_replicas=g.max_replicas,
            config=g.config,
            state=g.policy_state,
        )
        desired, g.policy_state = self.policy(ctx)
        _resize(g, desired - ctx.running - ctx.starting, t_ns, plane.outstanding)
        return desired


def _resize(g: ScaledGroup, delta: int, t_ns: int, outstanding: np.ndarray) -> None:
    """Add `delta` replicas (draining ones first: their weights are loaded; then off ones, by
    id) or remove -delta (starting ones first, then running ones, highest id first)."""
    order = np.arange(len(g.cells))
    if delta > 0:
        for kind in (DRAINING, OFF):
            pick = order[g.state == kind][:delta]
            if kind == DRAINING:
                g.state[pick] = RUNNING
            else:
                g.state[pick] = STARTING
                g.ready_ns[pick] = t_ns + g.startup_ns[pick]
            delta -= len(pick)
    elif delta < 0:
        for kind in (STARTING, RUNNING):
            pick = order[g.state == kind][::-1][:-delta]
            g.state[pick] = OFF if kind == STARTING else DRAINING
            delta += len(pick)
        idle = (g.state == DRAINING) & (outstanding[g.cells] == 0)
        g.state[idle] = OFF
    g.state[(g.state == STARTING) & (g.ready_ns <= t_ns)] = RUNNING  # no start-up time


def _busy_by_accelerator(counters: DeviceCounters, n: int) -> np.ndarray:
    """Cumulative busy ns per global accelerator id (0 for those not held here)."""
    out = np.zeros(n, dtype=np.int64)
    out[counters.accelerator_id.astype(np.int64)] = counters.busy_ns
    return out


def build_autoscaler(topology: Any, step_ns: int, regions: list[int] | None = None) -> Autoscaler:
    """The autoscaled (region, service) groups of the scenario (of `regions` only, for a
    region shard): cells by id, the first ``initial_replicas`` running from time 0."""
    sc = topology.scenario
    cell_region = np.asarray(topology.cell_region, dtype=np.int64)
    cell_service = np.asarray(topology.cell_service, dtype=np.int64)
    acc0 = np.append(np.asarray(topology.cell_acc0, dtype=np.int64), topology.accelerators)
    groups = []
    for s, service in enumerate(sc.services):
        config = sc.autoscaling.get(service)
        for r, region in enumerate(sc.regions):
            cells = np.flatnonzero((cell_region == r) & (cell_service == s))
            if config is None or not len(cells) or (regions is not None and r not in regions):
                continue
            top = min(config.max_replicas or len(cells), len(cells))
            initial = config.initial_replicas or config.min_replicas
            state = np.full(len(cells), OFF, dtype=np.int8)
            state[:initial] = RUNNING
            idle_w = [topology.catalog.chip(topology.acc_chip[acc0[c]]).idle_w for c in cells]
            groups.append(
                ScaledGroup(
                    region=region.name,
                    service=service,
                    key=(r, s),
                    config=config,
                    cells=cells,
                    accelerators=np.diff(acc0)[cells],
                    idle_w=np.asarray(idle_w) * np.diff(acc0)[cells],
                    startup_ns=np.array([startup_ns(topology, c, config) for c in cells.tolist()]),
                    acc_ids=[np.arange(acc0[c], acc0[c + 1]) for c in cells],
                    state=state,
                    ready_ns=np.zeros(len(cells), dtype=np.int64),
                    max_replicas=top,
                    next_decision_ns=round(config.interval_s * NS_PER_S),  # none at t = 0
                )
            )
    return Autoscaler(groups, step_ns)


def autoscale_hooks(
    events: EventHooks, scaler: Autoscaler, plane: Any, fleet: Any, counters: Counters
) -> EventHooks:
    """The loop's event hooks with the autoscaler's transitions after the fleet events of
    the same boundary (`fleet`: engine/events.py FleetEvents, for its failed/drained cells).
    Without autoscaled services the hooks are returned unchanged (no cost per window)."""
    if not scaler.groups:
        return events

    def next_boundary() -> int | None:
        times = [b for b in (events.next_boundary(), scaler.next_boundary()) if b is not None]
        return min(times) if times else None

    def apply_due(t_ns: int) -> RequestBatch:
        b = events.next_boundary()
        retry = events.apply_due(t_ns) if b is not None and b <= t_ns else _NO_ROWS
        scaler.apply_due(t_ns, plane, fleet.failed, fleet.drained, counters)
        return retry

    return EventHooks(next_boundary, apply_due, events.unroutable)
