"""Result directories with known latency distributions for the analysis tests.

Runs are written with the results package's own writer (ResultsWriter + ShardWriter +
DeviceTracker) from synthetic engine `Completed` arrays. Reference figures are computed here
with numpy straight from those arrays, independently of the reader and of the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtia_cluster.engine.cell import Completed, DeviceCounters
from mtia_cluster.results import DeviceInfo, DeviceTracker, ResultsWriter, ServiceSLO, VerdictRules

SERVICES = ["ranker", "chat"]
REGIONS = ["us-east", "eu-west"]
CHIPS = ["mtia-1", "mtia-2i"]
MS = 1_000_000
SLOS = {
    "ranker": ServiceSLO(kind="rr", percentile=99.0, latency_ns=95 * MS),
    "chat": ServiceSLO(kind="llm", percentile=99.0, ttft_ns=300 * MS, tpot_ns=20 * MS),
}
SPAN_NS = 10_000_000_000
INTERVAL_NS = 1_000_000_000
N_ACCEL = 8  # accelerator a: region a // 4, rack a // 2, chip a % 2, service (a // 2) % 2


@dataclass
class Spec:
    """Shape of a synthetic run: requests per region and service, slowdown of a region."""

    per_group: int = 1000
    slow_factor: float = 1.0  # multiplies every latency in eu-west
    drop_every: int = 0  # every k-th ranker request in us-east is dropped (0: none)
    seed: int = 0


def make_completed(spec: Spec) -> Completed:
    """Ranker latencies 1..100 ms in a known cycle; chat TTFT 10..400 ms, TPOT 1..30 ms."""
    parts = []
    rid = 0
    rng = np.random.default_rng(spec.seed)
    for r in range(len(REGIONS)):
        for s in range(len(SERVICES)):
            n = spec.per_group
            i = np.arange(n, dtype=np.int64)
            arrival = np.sort(rng.integers(0, SPAN_NS - 1_000_000_000, n)).astype(np.int64)
            factor = spec.slow_factor if r == 1 else 1.0
            if s == 0:
                lat = (((i * 37) % 100 + 1) * MS * factor).astype(np.int64)
                first = arrival + lat
                tokens = np.zeros(n, dtype=np.int32)
            else:
                ttft = ((((i * 13) % 40) + 1) * 10 * MS * factor).astype(np.int64)
                tokens = (i % 20 + 1).astype(np.int32)
                tpot = ((((i * 7) % 30) + 1) * MS * factor).astype(np.int64)
                first = arrival + ttft
                lat = ttft + tpot * (tokens.astype(np.int64) - 1)
            accel = (r * 4 + s * 2 + (i % 2)).astype(np.int32)
            status = np.zeros(n, dtype=np.int8)
            if spec.drop_every and r == 0 and s == 0:
                status[:: spec.drop_every] = 1
            parts.append(
                Completed(
                    request_id=np.arange(rid, rid + n, dtype=np.int64),
                    service=np.full(n, s, dtype=np.int32),
                    region=np.full(n, r, dtype=np.int32),
                    host_id=(accel // 2).astype(np.int32),
                    accelerator_id=np.where(status == 1, -1, accel).astype(np.int32),
                    arrival_ns=arrival,
                    start_ns=arrival,
                    first_token_ns=first,
                    finish_ns=arrival + lat,
                    status=status,
                    batch_size=np.ones(n, dtype=np.int32),
                    items=np.where(s == 0, 100, 0).astype(np.int32) * np.ones(n, np.int32),
                    input_tokens=np.where(s == 1, 50, 0).astype(np.int32) * np.ones(n, np.int32),
                    output_tokens=tokens,
                    preemptions=np.zeros(n, np.int32),
                    cached_tokens=np.zeros(n, np.int64),
                    origin_region=np.full(n, r, dtype=np.int32),
                    spill_rtt_ns=np.zeros(n, np.int64),
                )
            )
            rid += n
    return Completed.concat(parts)


def device_info() -> DeviceInfo:
    """Eight accelerators, two per rack; chips alternate; rack-pairs serve ranker then chat."""
    a = np.arange(N_ACCEL, dtype=np.int32)
    return DeviceInfo(
        accelerator_id=a,
        host_id=a // 2,
        rack_id=a // 2,
        region=a // 4,
        chip=a % 2,
        service=(a // 2) % 2,
        idle_w=np.full(N_ACCEL, 20.0),
        busy_w=np.full(N_ACCEL, 90.0),
    )


def busy_fraction(a: np.ndarray, k: int) -> np.ndarray:
    """Known utilization of accelerator a in device interval k."""
    return ((a + 1) * (k % 3 + 1)) / 40.0


def write(out: Path, spec: Spec, *, min_duration_ns: int = 1_000_000_000) -> Path:
    """Write the run (two shards, ten 1 s device intervals) and return its directory."""
    c = make_completed(spec)
    info = device_info()
    rules = VerdictRules(min_duration_ns=min_duration_ns)
    with ResultsWriter(
        out,
        manifest={"seed": spec.seed},
        services=SERVICES,
        regions=REGIONS,
        slos=SLOS,
        interval_ns=INTERVAL_NS,
        rules=rules,
        row_group_rows=512,
    ) as run:
        halves = np.array_split(np.random.default_rng(1).permutation(len(c)), 2)
        for s, rows in enumerate(halves):
            with run.shard(s) as shard:
                shard.write_completed(c.take(np.sort(rows)))
                if s == 0:
                    _devices(shard, info)
        return run.finalize(wall_time_s=1.0, simulated_span_ns=SPAN_NS)


def _devices(shard: object, info: DeviceInfo) -> None:
    tracker = DeviceTracker(info, regions=REGIONS, chips=CHIPS, services=SERVICES)
    busy = np.zeros(N_ACCEL, dtype=np.int64)
    a = info.accelerator_id
    for k in range(SPAN_NS // INTERVAL_NS):
        busy += (busy_fraction(a, k) * INTERVAL_NS).astype(np.int64)
        counters = DeviceCounters(
            accelerator_id=a,
            busy_ns=busy.copy(),
            batches=np.full(N_ACCEL, k + 1, dtype=np.int64),
            work_units=np.full(N_ACCEL, k + 1, dtype=np.int64),
            peak_memory_bytes=np.full(N_ACCEL, 1 << 30, dtype=np.int64),
        )
        table = tracker.interval(counters, start_ns=k * INTERVAL_NS, end_ns=(k + 1) * INTERVAL_NS)
        shard.write_devices(table)  # type: ignore[attr-defined]
