"""The realistic I/O floor of `simulate -o` (issue 18): read the trace and write the rows a
`simulate -o` of the same run actually wrote, with the product's Parquet settings.

bench_fleet.py's `io_floor` writes as many `requests/` rows as the trace has, but fills every
non-trace column with ``np.arange`` and lets pyarrow try a dictionary on every column, while
the product writes many constant columns on R&R fleets and dictionary-encodes only the name
columns (results/shard.py). This floor instead loads the `requests/` rows (and, on request,
the `devices/` rows) of an existing results directory into memory first, then times only:

* reading the trace (``pq.read_table``, every column), and
* writing those rows again, one file per region partition (the `devices/` rows: one file),
  zstd, dictionary only on the name columns, row groups of the product's size
  (``results.shard.ROW_GROUP_ROWS``), exactly as ``ShardWriter``'s parts are written.

No simulation, no conversion, no statistics: what a process that only moves these bytes
needs. ``procs=2`` splits the regions in two halves, one process each (each reads the whole
trace, as a region shard of `replay` decodes it), started together: what two cores can do.
Each measurement runs in fresh child processes; CPU is the children's own (every thread).

    .venv/bin/python benchmarks/realistic_floor.py RESULTS_DIR TRACE [--procs 1 2] [--devices]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mtia_cluster.results.schema import DEVICE_SCHEMA, REQUEST_FILE_SCHEMA
from mtia_cluster.results.shard import ROW_GROUP_ROWS


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The product's choice (results/shard.py): dictionary-encode only the name columns."""
    return [f.name for f in schema if pa.types.is_dictionary(f.type)]


def _write(table: pa.Table, path: Path, schema: pa.Schema) -> None:
    """`table` as one Parquet file written the way ``ShardWriter``'s parts are."""
    writer = pq.ParquetWriter(
        path, schema, compression="zstd", use_dictionary=_dictionary_columns(schema)
    )
    for lo in range(0, table.num_rows, ROW_GROUP_ROWS):
        piece = table.slice(lo, ROW_GROUP_ROWS)
        writer.write_table(piece, row_group_size=piece.num_rows)
    writer.close()


def _worker(
    trace: str, files: list[tuple[str, list[str], bool]], out: str, go: Any, done: Any
) -> None:
    """Load this worker's rows (not timed), wait for `go`, then read the trace and write the
    rows; report (seconds, CPU seconds, rows written)."""
    tables = []
    for name, paths, devices in files:
        schema = DEVICE_SCHEMA if devices else REQUEST_FILE_SCHEMA
        parts = [pq.read_table(p, schema=schema) for p in paths]
        tables.append((name, pa.concat_tables(parts), schema))
    rows = sum(t.num_rows for _, t, _ in tables)
    done.put(("loaded", rows))
    go.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    pq.read_table(trace)
    for name, table, schema in tables:
        _write(table, Path(out) / f"{name}.parquet", schema)
    done.put((time.perf_counter() - t0, time.process_time() - cpu0, rows))


def _groups(results: Path, procs: int, devices: bool) -> list[list[tuple[str, list[str], bool]]]:
    """The region partitions split into `procs` halves (contiguous, in name order); the
    `devices/` parts go to the first worker."""
    regions = sorted(d for d in (results / "requests").iterdir() if d.is_dir())
    per = [(d.name, sorted(str(p) for p in d.glob("part-*.parquet")), False) for d in regions]
    size = -(-len(per) // procs)
    groups = [per[i * size : (i + 1) * size] for i in range(procs)]
    if devices:
        parts = sorted(str(p) for p in (results / "devices").glob("part-*.parquet"))
        groups[0].append(("devices", parts, True))
    return groups


def realistic_floor(
    results: Path, trace: Path, procs: int = 1, devices: bool = False
) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, rows written) to read `trace` and write the `requests/`
    rows of the results directory `results` (and its `devices/` rows if `devices`) in
    `procs` processes at once; the rows are loaded into memory before the clock starts."""
    ctx = multiprocessing.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    out = Path(tempfile.mkdtemp(prefix="realistic-floor-"))
    try:
        workers = [
            ctx.Process(target=_worker, args=(str(trace), files, str(out / str(i)), go, done))
            for i, files in enumerate(_groups(results, procs, devices))
        ]
        for i, w in enumerate(workers):
            (out / str(i)).mkdir()
            w.start()
        for _ in workers:
            done.get()  # ("loaded", rows)
        t0 = time.perf_counter()
        go.set()
        reports = [done.get() for _ in workers]
        wall = time.perf_counter() - t0
        for w in workers:
            w.join()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return wall, sum(r[1] for r in reports), sum(r[2] for r in reports)


def print_floors(results: Path, trace: Path, n: int, procs: list[int], devices: bool) -> None:
    """One line per process count (and with `devices/` if asked), rates per trace request."""
    for with_devices in [False, True] if devices else [False]:
        for p in procs:
            wall, cpu, rows = realistic_floor(results, trace, p, with_devices)
            what = "requests/ + devices/" if with_devices else "requests/"
            print(
                f"realistic floor ({p} process{'es' if p > 1 else ''}: read trace, write the run's "
                f"{rows:,} {what} rows): {wall:.2f} s = {n / wall:,.0f} requests/s; CPU "
                f"{cpu:.2f} s = {n / cpu:,.0f} requests per CPU-second; load "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", type=Path, help="a results directory of `simulate -o`")
    ap.add_argument("trace", type=Path, help="the trace that run read")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--devices", action="store_true", help="also with the devices/ rows")
    args = ap.parse_args()
    n = pq.ParquetFile(args.trace).metadata.num_rows
    print_floors(args.results, args.trace, n, args.procs, args.devices)


if __name__ == "__main__":
    main()
