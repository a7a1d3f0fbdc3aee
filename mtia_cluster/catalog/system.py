"""Hosts and platforms (servers and racks), as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtia_cluster.catalog.quantity import Provenance, SourcedReader, read_sources
from mtia_cluster.config import Fields

GB = 1e9


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

    @property
    def accelerators(self) -> int:
        return self.hosts * self.accelerators_per_host


def parse_host(data: dict, path: Path) -> Host:
    f = Fields(data, path)
    r = SourcedReader(f, read_sources(f))
    q = r.quantity
    return Host(
        name=f.str("name"),
        display_name=f.str("display_name"),
        file=str(path),
        sockets=int(q(f, "sockets", positive=True)),
        cores_per_socket=int(q(f, "cores_per_socket", positive=True)),
        accelerators_per_socket=int(q(f, "accelerators_per_socket", positive=True)),
        dram_bytes_per_socket=q(f, "dram_gb_per_socket", positive=True) * GB,
        dram_bandwidth_bytes_per_s_per_socket=q(f, "dram_bandwidth_gb_s_per_socket", positive=True)
        * GB,
        nic_bytes_per_s_per_socket=q(f, "nic_gb_s_per_socket", positive=True) * GB,
        power_w=q(f, "power_w", positive=True),
        provenance=r.provenance,
    )


def parse_platform(data: dict, path: Path) -> Platform:
    f = Fields(data, path)
    return Platform(
        name=f.str("name"),
        display_name=f.str("display_name"),
        file=str(path),
        chip=f.str("chip"),
        host=f.str("host"),
        hosts=f.int("hosts", positive=True),
        accelerators_per_host=f.int("accelerators_per_host", positive=True),
        rdma_nic=f.str("rdma_nic", default="none", choices=("none", "optional", "builtin")),
    )
