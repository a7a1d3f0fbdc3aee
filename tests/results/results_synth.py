"""Synthetic engine output for the results tests, and independent reference computations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mtia_cluster.engine.cell import Completed, DeviceCounters
from mtia_cluster.results import DeviceInfo, DeviceTracker, ResultsWriter, ServiceSLO

SERVICES = ["ranker", "chat"]
REGIONS = ["us-east", "eu-west", "ap-south"]
SLOS = {
    "ranker": ServiceSLO(kind="rr", percentile=99.0, latency_ns=40_000_000),
    "chat": ServiceSLO(kind="llm", percentile=99.0, ttft_ns=30_000_000, tpot_ns=2_000_000),
}
INTERVAL_NS = 250_000_000
N_ACCEL = 6


def make_completed(n: int, seed: int, span_ns: int = 2_000_000_000) -> Completed:
    """n finished requests with random services, regions, statuses and timestamps."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.integers(0, span_ns, n)).astype(np.int64)
    start = arrival + rng.integers(0, 5_000_000, n)
    first = start + rng.integers(0, 40_000_000, n)
    finish = first + rng.integers(0, 60_000_000, n)
    service = rng.integers(0, len(SERVICES), n).astype(np.int32)
    region = rng.integers(0, len(REGIONS), n).astype(np.int32)
    return Completed(
        request_id=rng.permutation(n * 3)[:n].astype(np.int64),
        service=service,
        region=region,
        host_id=rng.integers(0, 3, n).astype(np.int32),
        accelerator_id=rng.integers(0, N_ACCEL, n).astype(np.int32),
        arrival_ns=arrival,
        start_ns=start,
        first_token_ns=np.where(service == 0, finish, first),
        finish_ns=finish,
        status=rng.choice(np.array([0, 0, 0, 0, 0, 0, 1, 2, 3], dtype=np.int8), n),
        batch_size=rng.integers(1, 9, n).astype(np.int32),
        items=np.where(service == 0, rng.integers(1, 500, n), 0).astype(np.int32),
        input_tokens=np.where(service == 1, rng.integers(1, 2000, n), 0).astype(np.int32),
        output_tokens=np.where(service == 1, rng.integers(1, 40, n), 0).astype(np.int32),
        preemptions=np.where(service == 1, rng.integers(0, 3, n), 0).astype(np.int32),
        cached_tokens=np.where(service == 1, rng.integers(0, 500, n), 0).astype(np.int64),
        origin_region=region,
        spill_rtt_ns=np.zeros(n, dtype=np.int64),
        network_ns=np.where(rng.random(n) < 0.3, rng.integers(1, 5_000_000, n), 0),
    )


def device_info() -> DeviceInfo:
    """Six accelerators: two per region, one per service."""
    ids = np.arange(N_ACCEL, dtype=np.int32)
    return DeviceInfo(
        accelerator_id=ids,
        host_id=ids // 2,
        rack_id=ids // 4,
        region=(ids // 2).astype(np.int32),
        chip=np.zeros(N_ACCEL, dtype=np.int32),
        service=(ids % 2).astype(np.int32),
        idle_w=np.full(N_ACCEL, 30.0),
        busy_w=np.full(N_ACCEL, 85.0),
    )


def counters(k: int, ids: np.ndarray) -> DeviceCounters:
    """Cumulative counters after window k (deterministic in k and the accelerator id)."""
    busy = (k + 1) * (ids.astype(np.int64) + 1) * 10_000_000
    return DeviceCounters(
        accelerator_id=ids.astype(np.int32),
        busy_ns=busy,
        batches=(k + 1) * (ids.astype(np.int64) + 2),
        work_units=(k + 1) * 100 * np.ones(len(ids), dtype=np.int64),
        peak_memory_bytes=np.full(len(ids), 1 << 30, dtype=np.int64),
    )


def write_run(
    out: Path,
    completed: Completed,
    *,
    shards: list[np.ndarray],
    windows: int = 4,
    device_windows: int = 8,
    row_group_rows: int = 64,
    span_ns: int = 2_000_000_000,
    overwrite: bool = False,
) -> Path:
    """Write `completed` split over shards (row index arrays), each in `windows` chunks."""
    with ResultsWriter(
        out,
        manifest={"seed": 7},
        services=SERVICES,
        regions=REGIONS,
        slos=SLOS,
        interval_ns=INTERVAL_NS,
        row_group_rows=row_group_rows,
        overwrite=overwrite,
    ) as run:
        info = device_info()
        owners = np.array_split(np.arange(N_ACCEL), len(shards))
        for s, rows in enumerate(shards):
            with run.shard(s) as shard:
                for chunk in np.array_split(rows, windows):
                    shard.write_completed(completed.take(chunk))
                _write_devices(shard, info, owners[s], device_windows, span_ns)
        return run.finalize(wall_time_s=1.0, simulated_span_ns=span_ns)


def _write_devices(shard: Any, info: DeviceInfo, mine: np.ndarray, windows: int, span: int) -> None:
    """Device rows of the accelerators `mine`, counters given in reverse id order."""
    if len(mine) == 0 or windows == 0:
        return
    sub = DeviceInfo(**{k: getattr(info, k)[mine] for k in info.__dataclass_fields__})
    tracker = DeviceTracker(sub, regions=REGIONS, chips=["mtia-2i"], services=SERVICES)
    step = span // windows
    for k in range(windows):
        c = counters(k, sub.accelerator_id[::-1].copy())
        shard.write_devices(tracker.interval(c, start_ns=k * step, end_ns=(k + 1) * step))


def sorted_requests(table: pa.Table) -> pa.Table:
    """Rows by request_id with plain string columns (comparable across files)."""
    cols = {}
    for name in table.column_names:
        col = table[name]
        cols[name] = col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
    plain = pa.table(cols)
    return plain.sort_by("request_id").select(sorted(plain.column_names))


def reference_slo_ok(c: Completed, i: int) -> bool:
    """slo_ok of row i computed one request at a time, straight from the rule."""
    if c.status[i] != 0:
        return False
    slo = SLOS[SERVICES[c.service[i]]]
    if slo.latency_ns is not None and c.finish_ns[i] - c.arrival_ns[i] > slo.latency_ns:
        return False
    if slo.ttft_ns is not None and c.first_token_ns[i] - c.arrival_ns[i] > slo.ttft_ns:
        return False
    if slo.tpot_ns is not None and c.output_tokens[i] > 1:
        tpot = (c.finish_ns[i] - c.first_token_ns[i]) / (c.output_tokens[i] - 1)
        if tpot > slo.tpot_ns:
            return False
    return True


def write_shard_in_process(target: Any, shard: int, n: int, seed: int, rows: list[int]) -> int:
    """Run in another process: one shard writes its rows from a pickled RunTarget."""
    completed = make_completed(n, seed)
    with target.open_shard(shard) as writer:
        for chunk in np.array_split(np.asarray(rows, dtype=np.int64), 3):
            writer.write_completed(completed.take(chunk))
    return len(rows)
