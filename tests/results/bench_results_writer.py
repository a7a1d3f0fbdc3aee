"""Speed of the results writer and finalize (a benchmark, not a test: prints figures).

    .venv/bin/python tests/results/bench_results_writer.py 2000000

Synthetic engine rows (3 regions, 2 services, a quarter not ok) written by 4 shard writers
in 50 windows, then finalize() (summary, regions/ intervals, request_id check). Belongs in
benchmarks/ (owned by another helper); kept here so the figures in docs/results.md can be
reproduced.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_synth import REGIONS, SERVICES, SLOS, make_completed

from mtia_cluster.results import ResultsWriter


def main(n: int, shards: int = 4, windows: int = 50) -> None:
    completed = make_completed(n, seed=1, span_ns=700_000_000_000)
    out = Path(tempfile.mkdtemp()) / "run"
    started = time.perf_counter()
    with ResultsWriter(out, manifest={}, services=SERVICES, regions=REGIONS, slos=SLOS) as run:
        writers = [run.shard(s) for s in range(shards)]
        for rows in np.array_split(np.arange(n), windows):
            for s, part in enumerate(np.array_split(rows, shards)):
                writers[s].write_completed(completed.take(part))
        for w in writers:
            w.close()
        written = time.perf_counter()
        run.finalize()
    done = time.perf_counter()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"requests:        {n:,}")
    print(f"write:           {written - started:.2f} s ({n / (written - started):,.0f} rows/s)")
    print(f"finalize:        {done - written:.2f} s ({n / (done - written):,.0f} rows/s)")
    print(f"on disk:         {size / 1e6:.0f} MB")
    print(f"peak RSS:        {peak:,.0f} MB (includes the synthetic input)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
