"""The ``links/`` dataset: bytes and utilization per fabric link per metrics interval.

One row per (link that carries a scale-out flow, metrics interval), written by
:func:`mtia_cluster.results.write_run` next to ``devices/`` (engine/fabric/traffic.py makes
the rows; docs/network.md, "Fabric", says what they mean):

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

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from mtia_cluster.engine.fabric.traffic import LINK_COLUMNS, link_intervals
from mtia_cluster.engine.output import RunOutput

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


def link_table(run: RunOutput) -> pa.Table | None:
    """The run's ``links/`` rows (None: nothing crosses the fabric)."""
    cols = link_intervals(run)
    return None if cols is None else pa.table(cols, schema=LINK_SCHEMA)


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
