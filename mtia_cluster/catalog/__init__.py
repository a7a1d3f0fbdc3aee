"""The hardware catalog: chips, hosts and platforms as data (YAML under configs/catalog/)."""

from mtia_cluster.catalog.chip import DTYPE_BYTES, Chip, Efficiency, MemoryTier
from mtia_cluster.catalog.loader import Catalog, load_catalog
from mtia_cluster.catalog.system import Host, Platform

__all__ = [
    "DTYPE_BYTES",
    "Catalog",
    "Chip",
    "Efficiency",
    "Host",
    "MemoryTier",
    "Platform",
    "load_catalog",
]
