"""Remote embedding lookups of R&R hosts as fabric flows (docs/network.md, "Remote
embedding lookups").

A pool with ``embedding_hosts: N`` shards its model's embedding tables over groups of N
hosts. A batch of ``b`` items closed on host h needs ``b x E / N`` bytes of rows
(``E = embedding_bytes_per_sample``, rows shipped unpooled) from each of the N - 1 other
hosts of its group; the fetches run in parallel, each over its peer's flow (:mod:`.flows`,
striped over the NICs), so the batch waits

    path latency + ceil(b x max over peers of (E / N) / (stripes x slowest stripe's rate))

nanoseconds between closing and being dispatched to a server (the accelerators do not
wait: it is the host's NIC traffic). Every request of the batch has that as its
``network_ns``.

Placement independence: the rates are the fabric schedule's (a function of the scenario,
changing only at window boundaries, :mod:`.schedule`), and a batch uses the segment that
holds its close time, which is the same for any sharding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.workloads import RRModel


@dataclass(frozen=True)
class EmbeddingNet:
    """Per fabric segment and local host of an R&R group: the fixed and per-item wait."""

    start_ns: np.ndarray  # int64, segment starts
    latency_ns: np.ndarray  # int64 (segments, hosts): path latency (0: no remote lookups)
    ns_per_item: np.ndarray  # float64 (segments, hosts): slowest peer's time per item

    def batch_ns(self, host: np.ndarray, items: np.ndarray, close_ns: np.ndarray) -> np.ndarray:
        """Wait for remote rows of batches of `items` items closed at `close_ns` on local
        hosts `host` (0 for a host whose pool does not shard its tables)."""
        seg = np.searchsorted(self.start_ns, close_ns, side="right") - 1
        per_item = self.ns_per_item[seg, host]
        wait = self.latency_ns[seg, host] + np.ceil(items * per_item).astype(np.int64)
        return np.where(per_item > 0, wait, 0)


def embedding_net(topology: Any, cells: np.ndarray) -> EmbeddingNet | None:
    """The remote-lookup waits of the R&R hosts `cells` (one group's, in local order);
    None when none of them looks up rows on other hosts."""
    fabric = topology.fabric
    flows = fabric.flows
    segments = [fabric.cell_segments(int(c)) for c in cells]
    if not any(segments):
        return None
    starts = np.asarray(fabric.start_ns, dtype=np.int64)
    latency = np.zeros((len(starts), len(cells)), dtype=np.int64)
    per_item = np.zeros((len(starts), len(cells)))
    for i, (c, segs) in enumerate(zip(cells.tolist(), segments, strict=True)):
        if not segs:
            continue
        pool = topology.pools[topology.cell_pool[c]]
        model = topology.catalog.model(pool.model)
        assert isinstance(model, RRModel)
        peer_bytes = model.embedding_bytes_per_sample / pool.embedding_hosts
        stripes = np.bincount(flows.group[flows.cell == c])
        for s, (_, slowest, lat) in enumerate(segs):
            latency[s, i] = lat
            per_item[s, i] = float(np.max(peer_bytes / (stripes * slowest))) * 1e9
    return EmbeddingNet(starts, latency, per_item)
