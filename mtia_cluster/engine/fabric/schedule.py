"""The fabric's rates over a run: piecewise constant, changing only at link events.

The rule that keeps results exact and placement independent (docs/network.md, "Fabric"):
a flow's rate depends only on state known at a window boundary and identical in every
shard. The flow set is a function of the topology (backlogged flows, :mod:`.flows`) and the
link state a function of the scenario's ``link_*`` events, each taking effect at the first
window boundary at or after its time (as every fleet event). So the whole schedule is
computed from the scenario alone, before the run, by every process that builds cells, and a
rate holds from one boundary to the next. Each segment's rates are max-min fair
(:mod:`.maxmin`) over the paths chosen on the links that are up (:func:`paths`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtia_cluster.config.events import EventSpec
from mtia_cluster.engine.fabric.flows import Flows, scale_out_flows
from mtia_cluster.engine.fabric.maxmin import max_min_rates
from mtia_cluster.engine.fabric.net import FabricNet, build_net
from mtia_cluster.errors import UserError


@dataclass
class FabricSchedule:
    """Rates per segment ``[start_ns[i], start_ns[i+1])`` (the last one open-ended)."""

    net: FabricNet | None
    flows: Flows
    start_ns: list[int] = field(default_factory=list)
    flow_rate: list[np.ndarray] = field(default_factory=list)  # bytes/s per flow
    flow_hops: list[np.ndarray] = field(default_factory=list)  # switch hops per flow
    link_rate: list[np.ndarray] = field(default_factory=list)  # allocated bytes/s per link
    entries: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # paths
    capacity: list[np.ndarray] = field(default_factory=list)  # bytes/s per link (events)

    def segment_at(self, t_ns: int) -> int:
        """Index of the segment holding time `t_ns`."""
        return int(np.searchsorted(self.start_ns, t_ns, side="right")) - 1

    def segment_lists(self) -> tuple[list[Any], ...]:
        """The per-segment lists (one entry each per segment)."""
        return (
            self.start_ns,
            self.flow_rate,
            self.flow_hops,
            self.link_rate,
            self.entries,
            self.capacity,
        )

    def cell_segments(self, cell: int) -> list[tuple[int, np.ndarray, int]]:
        """Per segment: (start_ns, bytes/s of the slowest stripe of each sender group of
        the cell (index = group: prefill instance, or 0), the longest path's latency in
        ns); an empty list for a cell without scale-out flows."""
        mine = np.flatnonzero(self.flows.cell == cell)
        if len(mine) == 0 or self.net is None:
            return []
        lat = int(self.net.hop_latency_ns[self.flows.src_host[mine[0]]])
        group = self.flows.group[mine]
        out = []
        for t, rate, hops in zip(self.start_ns, self.flow_rate, self.flow_hops, strict=True):
            slowest = np.full(int(group.max()) + 1, np.inf)
            np.minimum.at(slowest, group, rate[mine])
            out.append((t, slowest, int(hops[mine].max()) * lat))
        return out


def build_schedule(topology: Any) -> FabricSchedule:
    """The schedule of `topology`'s scenario (no links built when nothing crosses the fabric)."""
    pairs = scale_out_flows(topology)  # one stripe per host pair
    if len(pairs) == 0:
        return FabricSchedule(None, pairs)
    net = build_net(topology, np.concatenate([pairs.src_host, pairs.dst_host]))
    flows = scale_out_flows(topology, net.host_nics)
    step = topology.scenario.report_interval_ns
    events = sorted((ev for ev in topology.scenario.events if ev.fabric), key=lambda ev: ev.at_ns)
    factor = np.ones(net.links)
    sched = FabricSchedule(net, flows)
    _solve(sched, factor, 0, None)
    for ev in events:
        at = -(-ev.at_ns // step) * step
        factor[_event_links(net, topology, ev)] = _new_factor(ev)
        if sched.start_ns[-1] == at:  # several events at one boundary: the last solve holds
            for seq in sched.segment_lists():
                seq.pop()
        _solve(sched, factor, at, ev)
    return sched


def _new_factor(ev: EventSpec) -> float:
    return {"link_fail": 0.0, "link_repair": 1.0}.get(ev.kind, ev.bandwidth_factor)


def _solve(sched: FabricSchedule, factor: np.ndarray, at_ns: int, ev: EventSpec | None) -> None:
    """Append the segment starting at `at_ns` with link capacities scaled by `factor`."""
    net = sched.net
    assert net is not None
    f, link, hops = paths(net, sched.flows, factor > 0)
    if np.any(hops < 0):
        bad = int(sched.flows.cell[np.argmax(hops < 0)])
        raise UserError(
            f"leaves cell {bad}'s scale-out traffic without a path (to take replicas down, "
            "use kind: fail with links:)",
            file=None if ev is None else ev.file,
            field="fabric" if ev is None else f"{ev.field_prefix}.kind",
            value=None if ev is None else ev.kind,
        )
    capacity = np.asarray(net.capacity) * factor
    rate = max_min_rates(f, link, capacity, len(sched.flows))
    sched.start_ns.append(at_ns)
    sched.flow_rate.append(rate)
    sched.flow_hops.append(hops)
    sched.link_rate.append(np.bincount(link, weights=rate[f], minlength=net.links))
    sched.entries.append((f, link))
    sched.capacity.append(capacity)


def paths(net: FabricNet, flows: Flows, up: np.ndarray) -> tuple[np.ndarray, ...]:
    """(flow of entry, link of entry, switch hops per flow; -1: no path) over the links
    that are `up`. Stripe k uses working NIC ``(first NIC + k) mod working NICs`` of each
    end (a failed NIC's stripes move to the others) and, across racks, spine
    ``(first NIC + k + src + dst) mod working spines`` of the region (ECMP-like,
    deterministic: the stripes of one host spread over the spines)."""
    fe: list[int] = []
    le: list[int] = []
    hops = np.zeros(len(flows), dtype=np.int64)
    ends = zip(
        flows.src_host, flows.dst_host, flows.stripe, flows.src_nic0, flows.dst_nic0, strict=True
    )
    for i, (a, b, k, na, nb) in enumerate(ends):
        nic_a = _working(net.host_nic0[a], int(net.host_nics[a]), up)
        nic_b = _working(net.host_nic0[b], int(net.host_nics[b]), up)
        ra, rb = net.host_rack[a], net.host_rack[b]
        if len(nic_a) == 0 or len(nic_b) == 0:
            hops[i] = -1
            continue
        hop = [int(nic_a[(na + k) % len(nic_a)]), int(nic_b[(nb + k) % len(nic_b)]) + 1]
        if ra != rb:
            spines = int(net.region_spines[net.host_region[a]])
            ok = [
                s
                for s in range(spines)
                if up[net.rack_link0[ra] + 2 * s] and up[net.rack_link0[rb] + 2 * s + 1]
            ]
            if not ok:
                hops[i] = -1
                continue
            s = ok[(na + k + a + b) % len(ok)]
            hop += [int(net.rack_link0[ra] + 2 * s), int(net.rack_link0[rb] + 2 * s + 1)]
        hops[i] = 1 if ra == rb else 3
        fe += [i] * len(hop)
        le += hop
    return np.array(fe, dtype=np.int64), np.array(le, dtype=np.int64), hops


def _working(first: int, n: int, up: np.ndarray) -> np.ndarray:
    """Ids of the ``up`` links of a host's working NICs."""
    ids = first + 2 * np.arange(n)
    return ids[up[ids] & up[ids + 1]]


def _event_links(net: FabricNet, topology: Any, ev: EventSpec) -> np.ndarray:
    """Link ids a link_* event acts on (UserError for an index out of range)."""
    r = [x.name for x in topology.scenario.regions].index(ev.region)
    hosts = net.local_hosts(r)
    if ev.links is not None:
        if max(ev.links) >= len(hosts):
            raise _range(ev, "links", f"the region has {len(hosts)} hosts on the fabric", ev.links)
        out = []
        for h in hosts[list(ev.links)]:
            if net.host_nic0[h] < 0:
                continue  # no flow uses the host: nothing to fail or slow
            nics = range(int(net.host_nics[h])) if ev.nics is None else ev.nics
            if max(nics) >= net.host_nics[h]:
                raise _range(ev, "nics", f"host has {net.host_nics[h]} NICs", nics)
            out += [net.host_nic0[h] + 2 * k + d for k in nics for d in (0, 1)]
        return np.array(out, dtype=np.int64)
    spines = ev.spines or ()
    if max(spines) >= net.region_spines[r]:
        raise _range(ev, "spines", f"the region has {net.region_spines[r]} spines", spines)
    racks = [k for k in np.unique(net.host_rack[hosts]) if net.rack_link0[k] >= 0]
    return np.array(
        [net.rack_link0[k] + 2 * s + d for k in racks for s in spines for d in (0, 1)],
        dtype=np.int64,
    )


def _range(ev: EventSpec, key: str, message: str, indexes: Any) -> UserError:
    """An index out of range, naming the largest one given (one value, not a tuple)."""
    return UserError(
        message, file=ev.file, field=f"{ev.field_prefix}.{key}", value=int(max(indexes))
    )
