"""Trace speed figures (issue 3): generate 10 M R&R requests, import the Azure conversation
trace, inspect 10 M rows. Prints figures and the machine; never asserts.

    .venv/bin/python benchmarks/bench_traces.py [--rows 10000000] [--repeat 3]

Each figure is the best of --repeat runs (the machine is shared). Generation is timed
without and with writing the Parquet file; inspection reads that file back.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtia_cluster.traces.generators import generate_table
from mtia_cluster.traces.importers import import_trace
from mtia_cluster.traces.inspect import inspect_trace
from mtia_cluster.traces.io import write_trace

AZURE_CONV = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "azure_llm_2023"
    / "AzureLLMInferenceTrace_conv.csv"
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _inspect_rss_mb(path: Path, run: bool = True) -> float:
    """Peak resident memory of a separate process that inspects `path` (streaming check);
    with run=False, of one that only imports (the baseline)."""
    # VmHWM, not ru_maxrss: the latter keeps the forked parent's peak across exec
    code = (
        "import sys; from mtia_cluster.traces.inspect import inspect_trace; "
        + ("inspect_trace(sys.argv[1]); " if run else "")
        + "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    spec = {
        "requests": args.rows,
        "services": [
            {
                "name": "rr-ranking",
                "kind": "rr",
                "rate_per_s": 10_000.0,
                "arrivals": {"process": "poisson"},
                "items": {"dist": "mlperf-dlrm-v2"},
            }
        ],
    }
    print(
        f"machine: nproc={os.cpu_count()} cpu={_cpu_model()!r} python={platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rr.parquet"
        s_gen, (table, meta) = _best(lambda: generate_table(spec, 0), args.repeat)
        print(f"generate {args.rows:,} R&R requests (in memory): {s_gen:.2f} s")
        s_gen_w, _ = _best(
            lambda: write_trace(generate_table(spec, 0)[0], out, meta, overwrite=True), args.repeat
        )
        print(
            f"generate {args.rows:,} R&R requests + write Parquet: {s_gen_w:.2f} s "
            f"({out.stat().st_size / 1e6:.0f} MB)"
        )
        del table
        if AZURE_CONV.exists():
            s_imp, t = _best(
                lambda: import_trace("azure-llm", AZURE_CONV, Path(tmp) / "conv.parquet"),
                args.repeat,
            )
            print(f"import Azure conv ({t.num_rows:,} rows): {s_imp:.3f} s")
        else:
            print(f"import Azure conv: skipped ({AZURE_CONV} not found)")
        s_ins, summary = _best(lambda: inspect_trace(out), args.repeat)
        print(f"inspect {summary['rows']:,} rows: {s_ins:.2f} s")
        print(
            f"inspect peak RSS in a fresh process: {_inspect_rss_mb(out):.0f} MB "
            f"(imports alone: {_inspect_rss_mb(out, run=False):.0f} MB; the trace is "
            f"{summary['rows'] * 24 / 1e6:.0f} MB decoded)"
        )


if __name__ == "__main__":
    main()
