"""The scale-out fabric of a topology as links: NICs, top-of-rack switches and a spine tier.

Per host ``nics_per_host`` NICs, each two links (``up`` host -> ToR, ``down`` ToR -> host) of
the NIC's rate; per rack and spine of its region one uplink (ToR -> spine) and one downlink
(spine -> ToR), each ``rack hosts x NICs x NIC rate / oversubscription / spines``; every
region has its own spine tier (``spines`` = the largest of its platforms'). A path between
two hosts is NIC up -> (ToR -> spine -> ToR, if the racks differ) -> NIC down: one switch hop
in a rack, three across racks. The fabric's parameters are the platform's catalog
``fabric:`` block (one NIC per host socket at the host's NIC rate when the platform has
none), overridden field by field by the scenario's ``fabric:``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mtia_cluster.catalog.system import FabricParams
from mtia_cluster.units import BITS_PER_BYTE, GB

# defaults for a platform without a ``fabric:`` block (estimates; docs/network.md)
DEFAULT_SPINES = 1
DEFAULT_HOP_LATENCY_NS = 600


def fabric_params(topology: Any, pool: int) -> FabricParams:
    """The fabric of pool `pool`'s platform, with the scenario's overrides applied."""
    cat = topology.catalog
    platform = cat.platform(topology.pools[pool].platform)
    base = platform.fabric
    if base is None:
        host = cat.host(platform.host)
        base = FabricParams(
            nics_per_host=host.sockets,
            nic_bytes_per_s=host.nic_bytes_per_s_per_socket,
            spines=DEFAULT_SPINES,
            oversubscription=1.0,
            hop_latency_ns=DEFAULT_HOP_LATENCY_NS,
        )
    o = topology.scenario.fabric
    return replace(
        base,
        nics_per_host=o.nics_per_host or base.nics_per_host,
        nic_bytes_per_s=(
            base.nic_bytes_per_s if o.nic_gbit_s is None else o.nic_gbit_s * GB / BITS_PER_BYTE
        ),
        spines=o.spines or base.spines,
        oversubscription=o.oversubscription or base.oversubscription,
        hop_latency_ns=base.hop_latency_ns if o.hop_latency_ns is None else o.hop_latency_ns,
    )


@dataclass
class FabricNet:
    """Every link of the fabric (ids, capacities, names) and the host -> rack -> region map."""

    host_region: np.ndarray
    host_rack: np.ndarray
    host_nic0: np.ndarray  # link id of the host's NIC 0 ``up`` link (NIC k: +2k, down: +1)
    host_nics: np.ndarray
    rack_link0: np.ndarray  # link id of the rack's uplink to spine 0 (spine s: +2s, down: +1)
    region_spines: np.ndarray
    hop_latency_ns: np.ndarray  # per host
    capacity: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    link_region: list[int] = field(default_factory=list)

    def add(self, capacity: float, name: str, region: int) -> None:
        """Append one link."""
        self.capacity.append(capacity)
        self.names.append(name)
        self.link_region.append(region)

    @property
    def links(self) -> int:
        return len(self.capacity)

    def local_hosts(self, region: int) -> np.ndarray:
        """The region's hosts in id order (events number hosts region-locally)."""
        return np.flatnonzero(self.host_region == region)


def build_net(topology: Any, used_hosts: np.ndarray) -> FabricNet:
    """The fabric links of the `used_hosts` (those some flow leaves or reaches) and of their
    racks, ids in host / rack order; other hosts and racks get no links (id -1): nothing of
    theirs crosses the fabric, so a large R&R fleet beside one LLM pool costs nothing."""
    hosts, racks = topology.hosts, topology.racks
    acc_host = np.asarray(topology.acc_host, dtype=np.int64)
    first = np.unique(acc_host, return_index=True)[1]
    host_pool = np.zeros(hosts, dtype=np.int64)
    host_pool[acc_host[first]] = np.asarray(topology.acc_pool, dtype=np.int64)[first]
    host_rack = np.zeros(hosts, dtype=np.int64)
    host_rack[acc_host] = np.asarray(topology.acc_rack, dtype=np.int64)
    params = [fabric_params(topology, p) for p in range(len(topology.pools))]
    region = np.asarray(topology.pool_region, dtype=np.int64)[host_pool]
    spines = np.ones(len(topology.scenario.regions), dtype=np.int64)
    for p, fp in enumerate(params):
        r = topology.pool_region[p]
        spines[r] = max(spines[r], fp.spines)
    net = FabricNet(
        host_region=region,
        host_rack=host_rack,
        host_nic0=np.full(hosts, -1, dtype=np.int64),
        host_nics=np.array([params[p].nics_per_host for p in host_pool], dtype=np.int64),
        rack_link0=np.full(racks, -1, dtype=np.int64),
        region_spines=spines,
        hop_latency_ns=np.array([params[p].hop_latency_ns for p in host_pool], dtype=np.int64),
    )
    for h in np.unique(used_hosts).tolist():
        net.host_nic0[h] = net.links
        fp = params[host_pool[h]]
        for k in range(fp.nics_per_host):
            for d in ("up", "down"):
                net.add(fp.nic_bytes_per_s, f"host{h}/nic{k}/{d}", int(region[h]))
    _add_rack_links(net, topology, host_pool, params, np.unique(host_rack[used_hosts]))
    return net


def _add_rack_links(
    net: FabricNet,
    topology: Any,
    host_pool: np.ndarray,
    params: list[FabricParams],
    racks: np.ndarray,
) -> None:
    """Each of `racks`' up/down link to each spine of its region."""
    for rack in racks.tolist():
        members = np.flatnonzero(net.host_rack == rack)
        net.rack_link0[rack] = net.links
        fp = params[host_pool[members[0]]]
        platform = topology.catalog.platform(topology.pools[host_pool[members[0]]].platform)
        spines = int(net.region_spines[net.host_region[members[0]]])
        down = platform.hosts * fp.nics_per_host * fp.nic_bytes_per_s
        for s in range(spines):
            for d in ("up", "down"):
                r = int(net.host_region[members[0]])
                net.add(down / fp.oversubscription / spines, f"rack{rack}/spine{s}/{d}", r)
