"""The ``links/`` dataset: bytes and utilization per fabric link per metrics interval.

One row per (link that carries a scale-out flow, metrics interval), written from the run's
``devices/`` rows by :func:`write_links`, which both ``simulate`` (``write_run``) and
``replay`` call before finalizing (engine/fabric/traffic.py makes the rows;
docs/network.md, "Fabric", says what they mean):

=========================  =========================================================
``region``                 region of the link
``link``                   ``host<h>/nic<k>/up|down`` or ``rack<r>/spine<s>/up|down``
``interval_start_ns``      metrics interval
``interval_end_ns``
``bytes``                  bytes the replicas' transfers put on the link in the interval
``capacity_bytes_per_s``   the link's bandwidth at the interval's start (link events)
``allocated_bytes_per_s``  max-min fair rate of the backlogged flows on it
``utilization``            bytes / (nominal bandwidth x interval)
=========================  =========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mtia_cluster.engine.fabric.traffic import LINK_COLUMNS, link_intervals
from mtia_cluster.results.writer_io import dataset_or_none

LINK_SCHEMA = pa.schema(
    [
        ("region", pa.string()),
        ("link", pa.string()),
        ("interval_start_ns", pa.int64()),
        ("interval_end_ns", pa.int64()),
        ("bytes", pa.int64()),
        ("capacity_bytes_per_s", pa.float64()),
        ("allocated_bytes_per_s", pa.float64()),
        ("utilization", pa.float64()),
    ]
)
assert tuple(LINK_SCHEMA.names) == LINK_COLUMNS
MAX_LINK_SERIES = 8


def link_table(topology: Any, regions: Sequence[str], devices: pa.Table) -> pa.Table | None:
    """The ``links/`` rows of a run from its ``devices/`` rows (None: nothing crosses the
    fabric)."""
    cols = link_intervals(topology.fabric, list(regions), devices)
    return None if cols is None else pa.table(cols, schema=LINK_SCHEMA)


def write_links(writer: Any, topology: Any, regions: Sequence[str]) -> None:
    """Write ``links/`` into a ResultsWriter's run from the ``devices/`` rows its shards
    wrote (all closed, not yet finalized): ``simulate`` (write_run) and ``replay`` (any
    placement) both end here, so their rows are the same. Nothing without fabric flows."""
    fabric = topology.fabric
    devices = dataset_or_none(Path(writer.tmp) / "devices")
    if fabric.net is None or devices is None:
        return
    flows = fabric.flows
    spans = zip(flows.driver_acc, flows.driver_n, strict=True)
    acc = np.unique(np.concatenate([a + np.arange(n) for a, n in spans])).tolist()
    columns = ["interval_start_ns", "interval_end_ns", "accelerator_id", "work_units"]
    rows = devices.to_table(columns=columns, filter=pc.field("accelerator_id").isin(acc))
    table = link_table(topology, regions, rows)
    if table is not None:
        writer.write_links(table)


def read_links(run_dir: str | Path) -> ds.Dataset | None:
    """``links/`` of a results directory, None when the run wrote none."""
    path = Path(run_dir) / "links"
    if not path.is_dir() or not any(p.suffix == ".parquet" for p in path.iterdir()):
        return None
    return ds.dataset(path, format="parquet", schema=LINK_SCHEMA)


def busiest_links(links: ds.Dataset) -> dict[str, tuple[list[float], list[float]]]:
    """Utilization over time (interval start, s) of the `MAX_LINK_SERIES` busiest distinct
    series (highest peak utilization), by ``region/link``. Links whose series are identical
    (the stripes of one rack carry the same flows) are one series labelled with the first
    link and how many more, "region/link (+7 identical)", so the chart shows distinct links."""
    t = links.to_table(columns=["region", "link", "interval_start_ns", "utilization"])
    label = np.char.add(
        np.char.add(t["region"].to_numpy(zero_copy_only=False).astype(str), "/"),
        t["link"].to_numpy(zero_copy_only=False).astype(str),
    )
    util = t["utilization"].to_numpy()
    start = t["interval_start_ns"].to_numpy() / 1e9
    groups: dict[tuple[tuple[float, ...], tuple[float, ...]], list[str]] = {}
    for n in np.unique(label):  # sorted: a group's first link is its lowest name
        rows = np.flatnonzero(label == n)
        rows = rows[np.argsort(start[rows], kind="stable")]
        groups.setdefault((tuple(start[rows].tolist()), tuple(util[rows].tolist())), []).append(
            str(n)
        )
    ranked = sorted(groups.items(), key=lambda g: -max(g[0][1], default=0.0))
    out: dict[str, tuple[list[float], list[float]]] = {}
    for (xs, ys), names in ranked[:MAX_LINK_SERIES]:
        more = f" (+{len(names) - 1} identical)" if len(names) > 1 else ""
        out[names[0] + more] = (list(xs), list(ys))
    return out
