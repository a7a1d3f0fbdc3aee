"""Which transfers cross the scale-out fabric: one flow per (cell, host pair, NIC stripe).

* An LLM replica larger than its chip's scale-up domain (TP/PP/EP over scale-out): its
  accelerators split into scale-up domains in id order, and the pipeline hands activations
  from each domain's first host to the next domain's (``engine/events.py`` uses the same
  "larger than the domain" rule for ``links`` failures).
* A disaggregated replica whose KV link is scale-out (``kv_link``, or a replica larger than
  the domain, as ``engine/llm/factory.py`` decides): prefill host -> decode host.

A host pair on different hosts is striped over ``min(NICs)`` NIC pairs (rank k's traffic on
NIC k, as one NIC per accelerator rank is wired), each stripe a flow; a pair on one host
never leaves it. Flows are *backlogged*: they exist while the replica does, whatever its
load, so their set depends only on the topology (see docs/network.md, "Fabric").
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Flows:
    """Struct of arrays, one row per stripe."""

    cell: np.ndarray
    src_host: np.ndarray
    dst_host: np.ndarray
    stripe: np.ndarray

    def __len__(self) -> int:
        return len(self.cell)


def _pairs(topology: Any, c: int) -> list[tuple[int, int]]:
    """(source host, destination host) of cell `c`'s scale-out transfers."""
    pool = topology.pools[topology.cell_pool[c]]
    if pool.kind != "llm" or pool.llm is None:
        return []
    chip = topology.catalog.chip(topology.acc_chip[topology.cell_acc0[c]])
    domain, size, acc0 = chip.scale_up_domain, pool.replica_size, topology.cell_acc0[c]
    s = pool.llm
    if s.prefill_accelerators is not None:
        n_pre = s.prefill_accelerators or max(1, size // 2)  # as the LLM factory
        link = s.kv_link or ("scale_up" if size <= domain else "scale_out")
        ends = [(acc0, acc0 + n_pre)] if link == "scale_out" else []
    else:
        firsts = list(range(acc0, acc0 + size, domain))
        ends = list(itertools.pairwise(firsts)) if size > domain else []
    hosts = topology.acc_host
    return [(hosts[a], hosts[b]) for a, b in ends if hosts[a] != hosts[b]]


def scale_out_flows(topology: Any, nics: np.ndarray | None = None) -> Flows:
    """Every stripe of every cell's scale-out transfers (cell order). `nics`: NICs per host
    (None: count the host pairs only, one stripe each, to see whether there are any)."""
    rows: list[tuple[int, int, int, int]] = []
    llm = {p for p, pool in enumerate(topology.pools) if pool.kind == "llm"}
    cell_pool = topology.cell_pool
    for c in (c for c in range(topology.cells) if cell_pool[c] in llm):
        for a, b in _pairs(topology, c):
            n = 1 if nics is None else int(min(nics[a], nics[b]))
            rows.extend((c, a, b, k) for k in range(n))
    cols = np.array(rows, dtype=np.int64).reshape(-1, 4).T
    return Flows(cell=cols[0], src_host=cols[1], dst_host=cols[2], stripe=cols[3])
