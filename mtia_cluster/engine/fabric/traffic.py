"""Bytes on every fabric link per metrics interval (the ``links/`` results dataset).

The schedule (:mod:`.schedule`) gives each flow's *rate* under the backlogged-flow rule;
the bytes a replica actually moves come from the work it did, read from the device
counters sampled every metrics interval (``work_units`` = tokens computed by its
iterations) times each flow's bytes per token (:mod:`.flows`): an LLM replica spanning
scale-up domains hands ``hidden x 2 bytes / ep`` per token across each domain boundary (the
activation the cost model's PP send/recv moves); a prefill instance ships
``kv_bytes_per_token`` per token it computed (requests wanting one token and prompt tokens
of transfers over scale-up are counted too: an over-estimate, noted in docs/network.md).
A host pair's bytes split evenly over its stripes, and a stripe's bytes go to the links of
its path in the segment at the interval's start.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LINK_COLUMNS = (
    "region",
    "link",
    "interval_start_ns",
    "interval_end_ns",
    "bytes",
    "capacity_bytes_per_s",
    "allocated_bytes_per_s",
    "utilization",
)


def link_intervals(run: Any) -> dict[str, Any] | None:
    """Columns of the ``links/`` rows of an in-process run (None: no fabric traffic), one
    row per (link that carries a flow, metrics interval), links in id order."""
    fabric = run.topology.fabric
    net, flows = fabric.net, fabric.flows
    if net is None:
        return None
    pair = _pair_index(flows)
    stripes = np.bincount(pair)[pair]
    used = np.unique(np.concatenate([le for _, le in fabric.entries]))
    regions = [run.regions[net.link_region[i]] for i in used]
    cols: dict[str, list[Any]] = {k: [] for k in LINK_COLUMNS}
    for (t0, c0), (t1, c1) in zip(run.samples, run.samples[1:], strict=False):
        if t1 <= t0:
            continue
        tokens = _work(c1, flows.driver_acc) - _work(c0, flows.driver_acc)
        flow_bytes = tokens * flows.bytes_per_token / stripes
        seg = fabric.segment_at(t0)
        fe, le = fabric.entries[seg]
        moved = np.bincount(le, weights=flow_bytes[fe], minlength=net.links)[used]
        capacity = fabric.capacity[seg][used]
        dt = (t1 - t0) / 1e9
        cols["region"] += regions
        cols["link"] += [net.names[i] for i in used]
        cols["interval_start_ns"] += [t0] * len(used)
        cols["interval_end_ns"] += [t1] * len(used)
        cols["bytes"] += np.round(moved).astype(np.int64).tolist()
        cols["capacity_bytes_per_s"] += capacity.tolist()
        cols["allocated_bytes_per_s"] += fabric.link_rate[seg][used].tolist()
        nominal = np.asarray(net.capacity)[used] * dt
        cols["utilization"] += (moved / nominal).tolist()
    return cols


def _pair_index(flows: Any) -> np.ndarray:
    """One index per (cell, sender group, source, destination) host pair, per flow."""
    keys = np.stack([flows.cell, flows.group, flows.src_host, flows.dst_host], axis=1)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)


def _work(counters: Any, acc: np.ndarray) -> np.ndarray:
    """Cumulative tokens of the given accelerators."""
    i = np.searchsorted(counters.accelerator_id, np.asarray(acc))
    return np.asarray(counters.work_units[i], dtype=np.float64)
