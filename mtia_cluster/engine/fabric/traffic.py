"""Bytes on every fabric link per metrics interval (the ``links/`` results dataset).

The schedule (:mod:`.schedule`) gives each flow's *rate* under the backlogged-flow rule;
the bytes a replica actually moves come from the work it did, read from the ``devices/``
rows the run wrote for every metrics interval (``work_units`` = tokens computed by its
iterations; the same rows whether ``simulate`` or ``replay`` wrote them) times each flow's
bytes per token (:mod:`.flows`): an LLM replica spanning
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


def link_intervals(fabric: Any, regions: list[str], devices: Any) -> dict[str, Any] | None:
    """Columns of the ``links/`` rows (None: no fabric traffic), one row per (link that
    carries a flow, metrics interval), links in id order, intervals in time order.

    `devices` is a ``devices/`` table (at least ``interval_start_ns``, ``interval_end_ns``,
    ``accelerator_id``, ``work_units``) as the run wrote it: the rows come from the written
    intervals, so ``simulate`` and every ``replay`` placement give the same rows."""
    net, flows = fabric.net, fabric.flows
    if net is None:
        return None
    pair = _pair_index(flows)
    stripes = np.bincount(pair)[pair]
    used = np.unique(np.concatenate([le for _, le in fabric.entries]))
    names = [regions[net.link_region[i]] for i in used]
    cols: dict[str, list[Any]] = {k: [] for k in LINK_COLUMNS}
    for t0, t1, tokens in _interval_tokens(devices, flows.driver_acc, flows.driver_n):
        flow_bytes = tokens * flows.bytes_per_token / stripes
        seg = fabric.segment_at(t0)
        fe, le = fabric.entries[seg]
        moved = np.bincount(le, weights=flow_bytes[fe], minlength=net.links)[used]
        cols["region"] += names
        cols["link"] += [net.names[i] for i in used]
        cols["interval_start_ns"] += [t0] * len(used)
        cols["interval_end_ns"] += [t1] * len(used)
        cols["bytes"] += np.round(moved).astype(np.int64).tolist()
        cols["capacity_bytes_per_s"] += fabric.capacity[seg][used].tolist()
        cols["allocated_bytes_per_s"] += fabric.link_rate[seg][used].tolist()
        nominal = np.asarray(net.capacity)[used] * ((t1 - t0) / 1e9)
        cols["utilization"] += (moved / nominal).tolist()
    return cols


def _interval_tokens(
    devices: Any, acc: np.ndarray, span: np.ndarray
) -> list[tuple[int, int, np.ndarray]]:
    """Per written interval (start, end; time order): the work units (tokens, items) each
    flow's driving accelerators (``span`` of them from ``acc``) did in it (0 without a
    row)."""
    start = np.asarray(devices.column("interval_start_ns").to_numpy(), dtype=np.int64)
    end = np.asarray(devices.column("interval_end_ns").to_numpy(), dtype=np.int64)
    ids = np.asarray(devices.column("accelerator_id").to_numpy(), dtype=np.int64)
    work = np.asarray(devices.column("work_units").to_numpy(), dtype=np.float64)
    keys = np.unique(np.stack([start, end], axis=1), axis=0).tolist() if len(start) else []
    out = []
    for t0, t1 in keys:
        if t1 <= t0:
            continue
        mine = np.flatnonzero((start == t0) & (end == t1))
        table = dict(zip(ids[mine].tolist(), work[mine].tolist(), strict=True))
        tokens = np.array(
            [
                sum(table.get(a + i, 0.0) for i in range(n))
                for a, n in zip(np.asarray(acc).tolist(), np.asarray(span).tolist(), strict=True)
            ]
        )
        out.append((int(t0), int(t1), tokens))
    return out


def _pair_index(flows: Any) -> np.ndarray:
    """One index per (cell, sender group, source, destination) host pair, per flow."""
    keys = np.stack([flows.cell, flows.group, flows.src_host, flows.dst_host], axis=1)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
