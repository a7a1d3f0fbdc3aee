"""Hosts and platforms (servers and racks), as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtia_cluster.catalog.models import HostFile, PlatformFabric, PlatformFile
from mtia_cluster.catalog.quantity import Provenance, SourcedReader
from mtia_cluster.units import BITS_PER_BYTE, GB


@dataclass(frozen=True)
class Host:
    """A server's CPU side: sockets, cores, DRAM and NIC per socket, non-accelerator power."""

    name: str
    display_name: str
    file: str
    sockets: int
    cores_per_socket: int
    accelerators_per_socket: int
    dram_bytes_per_socket: float
    dram_bandwidth_bytes_per_s_per_socket: float
    nic_bytes_per_s_per_socket: float
    power_w: float
    provenance: dict[str, Provenance] = field(default_factory=dict, compare=False, repr=False)

    @property
    def accelerators(self) -> int:
        return self.sockets * self.accelerators_per_socket

    @property
    def cores_per_accelerator(self) -> float:
        """CPU cores a socket can give each of its accelerators (NUMA-local share)."""
        return self.cores_per_socket / self.accelerators_per_socket

    @property
    def dram_bandwidth_per_accelerator(self) -> float:
        return self.dram_bandwidth_bytes_per_s_per_socket / self.accelerators_per_socket


@dataclass(frozen=True)
class FabricParams:
    """A platform's scale-out fabric (catalog ``fabric:``; engine/fabric/ builds the links)."""

    nics_per_host: int
    nic_bytes_per_s: float
    spines: int
    oversubscription: float  # ToR downlink : uplink bandwidth
    hop_latency_ns: int


@dataclass(frozen=True)
class Platform:
    """A deployable unit (server or rack): `hosts` hosts of `accelerators_per_host` chips."""

    name: str
    display_name: str
    file: str
    chip: str
    host: str
    hosts: int
    accelerators_per_host: int
    rdma_nic: str  # none | optional | builtin
    fabric: FabricParams | None = None  # None: one NIC per host socket (engine/fabric/)
    provenance: dict[str, Provenance] = field(default_factory=dict, compare=False, repr=False)

    @property
    def accelerators(self) -> int:
        return self.hosts * self.accelerators_per_host


def parse_host(spec: HostFile, path: Path) -> Host:
    """Build one host from its validated file; quantities range- and provenance-checked."""
    r = SourcedReader(path, spec.sources)

    def q(name: str) -> float:
        return r.quantity(getattr(spec, name), name, positive=True)

    return Host(
        name=spec.name,
        display_name=spec.display_name,
        file=str(path),
        sockets=int(q("sockets")),
        cores_per_socket=int(q("cores_per_socket")),
        accelerators_per_socket=int(q("accelerators_per_socket")),
        dram_bytes_per_socket=q("dram_gb_per_socket") * GB,
        dram_bandwidth_bytes_per_s_per_socket=q("dram_bandwidth_gb_s_per_socket") * GB,
        nic_bytes_per_s_per_socket=q("nic_gb_s_per_socket") * GB,
        power_w=q("power_w"),
        provenance=r.provenance,
    )


def parse_platform(spec: PlatformFile, path: Path) -> Platform:
    """Build one platform from its validated file (the model checks every field)."""
    r = SourcedReader(path, spec.sources)
    return Platform(
        name=spec.name,
        display_name=spec.display_name,
        file=str(path),
        chip=spec.chip,
        host=spec.host,
        hosts=spec.hosts,
        accelerators_per_host=spec.accelerators_per_host,
        rdma_nic=spec.rdma_nic,
        fabric=None if spec.fabric is None else _fabric(spec.fabric, r),
        provenance=r.provenance,
    )


def _fabric(spec: PlatformFabric, r: SourcedReader) -> FabricParams:
    """The platform's fabric block, range- and provenance-checked."""
    return FabricParams(
        nics_per_host=int(r.quantity(spec.nics_per_host, "fabric.nics_per_host", positive=True)),
        nic_bytes_per_s=r.quantity(spec.nic_gbit_s, "fabric.nic_gbit_s", positive=True)
        * GB
        / BITS_PER_BYTE,
        spines=int(r.quantity(spec.spines, "fabric.spines", positive=True)),
        oversubscription=r.quantity(spec.oversubscription, "fabric.oversubscription", min_value=1),
        hop_latency_ns=int(r.quantity(spec.hop_latency_ns, "fabric.hop_latency_ns")),
    )
