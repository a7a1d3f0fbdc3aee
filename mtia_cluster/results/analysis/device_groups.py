"""Accelerator totals per analysis group from `devices/`, read in record batches.

Each device-interval row is assigned to the group of its region, service (``-`` when idle),
chip and rack, and to the window of its interval start (as `regions/` does). The totals are
:class:`~mtia_cluster.results.devices.DeviceTotals`, so utilization, power and perf/W are
derived by the same code as `summary.json`.
"""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds

from mtia_cluster.results.analysis.groups import Keys, Level, name_codes
from mtia_cluster.results.devices import COST_COLUMNS, DeviceTotals, device_columns
from mtia_cluster.results.devstats import device_stats, group_totals, names_of


def max_interval_start(devices: ds.Dataset | None) -> int:
    """Latest device interval start (ns), -1 without devices."""
    if devices is None:
        return -1
    latest = -1
    for batch in devices.to_batches(columns=["interval_start_ns"]):
        if batch.num_rows:
            latest = max(latest, int(np.max(batch["interval_start_ns"].to_numpy())))
    return latest


def device_groups(
    devices: ds.Dataset | None, keys: Keys, levels: list[Level], window_ns: int | None
) -> list[dict[int, DeviceTotals]]:
    """Per level: group id -> totals of the device rows in it."""
    out: list[dict[int, DeviceTotals]] = [{} for _ in levels]
    if devices is None:
        return out
    if window_ns is None:
        return _whole_run(devices, keys, levels)
    for batch in devices.to_batches(columns=device_columns(devices)):
        if batch.num_rows == 0:
            continue
        accel = batch["accelerator_id"].to_numpy().astype(np.int64)
        codes = {
            "region": name_codes(batch["region"], keys.labels["region"]),
            "service": name_codes(batch["service"], keys.labels["service"]),
            "generation": keys.from_accelerator("generation", accel),
            "rack": keys.from_accelerator("rack", accel),
        }
        start = batch["interval_start_ns"].to_numpy()
        end = batch["interval_end_ns"].to_numpy()
        busy = batch["busy_ns"].to_numpy()
        names = [n for n in ["energy_j", *COST_COLUMNS] if n in batch.schema.names]
        energy = {n: batch[n].to_numpy() for n in names}
        for i, level in enumerate(levels):
            window = (
                np.zeros(len(start), dtype=np.int64)
                if window_ns is None
                else np.clip(start // window_ns, 0, level.windows - 1)
            )
            gid = level.gid(codes, window)
            _accumulate(out[i], gid, accel, start, end, busy, energy)
    return out


def _whole_run(
    devices: ds.Dataset, keys: Keys, levels: list[Level]
) -> list[dict[int, DeviceTotals]]:
    """Without windows: each group's totals from the per-accelerator totals, summed as
    summary.json sums its groups (results/devstats.py), so the figures are its bits."""
    stats = device_stats(devices, 1)
    if stats is None:
        return [{} for _ in levels]
    accel = stats.columns["accelerator_id"]
    codes = {
        "region": name_codes(names_of(stats, "region"), keys.labels["region"]),
        "service": name_codes(names_of(stats, "service"), keys.labels["service"]),
        "generation": keys.from_accelerator("generation", accel),
        "rack": keys.from_accelerator("rack", accel),
    }
    window = np.zeros(len(accel), dtype=np.int64)
    return [group_totals(stats, level.gid(codes, window)) for level in levels]


def _accumulate(
    into: dict[int, DeviceTotals],
    gid: np.ndarray,
    accel: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    busy: np.ndarray,
    energy: dict[str, np.ndarray],
) -> None:
    """Add one batch's rows to the per-group totals (sorted by group, one slice each)."""
    order = np.argsort(gid, kind="stable")
    g = gid[order]
    cuts = np.flatnonzero(np.diff(g)) + 1
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(g)], strict=True):
        rows = order[a:b]
        part = DeviceTotals(
            busy_ns=int(busy[rows].sum()),
            device_ns=int((end[rows] - start[rows]).sum()),
            energy_j=float(energy["energy_j"][rows].sum()),
            start_ns=int(start[rows].min()),
            end_ns=int(end[rows].max()),
            accelerators={int(x) for x in np.unique(accel[rows])},
            cost={n: float(energy[n][rows].sum()) if n in energy else 0.0 for n in COST_COLUMNS},
        )
        into.setdefault(int(g[a]), DeviceTotals()).add(part)
