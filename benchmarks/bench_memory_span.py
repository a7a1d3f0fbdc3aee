"""Peak RSS against simulated span at a fixed request count (issue 18 "bounded memory"):
`simulate` with and without `-o`, before/after, and the outputs' SHA-256.

The same N requests (default 10,000, Poisson, `feed-ranking` in `us-east`) are spread over
each span (default 10 s, 1,000 s and 100,000 s simulated: rates N/span) and replayed on
`configs/scenarios/rr-small.yaml` (one MTIA 2i rack, 72 accelerators) with 1-s metrics
intervals (`--set metrics_interval_ms=1000`, the interval of the capacity search that ran out
of memory), so the run samples 72 device counters per simulated second. Each command runs in
a fresh process per checkout (a source tree put first on PYTHONPATH: default `/work/main`,
the tree before, and this one), alternating checkouts per span (the machine is shared:
compare figures of the same span), after one untimed small run per checkout (numba's
kernel cache); peak RSS is the process's `ru_maxrss`.

Every data file the two checkouts write with `-o` (`requests/`, `devices/`, `regions/`
Parquet parts, `summary.json`) and the `--json` document of `simulate` without `-o` are
hashed (SHA-256) and compared between checkouts: `same` means byte for byte.

Older checkouts refuse a kept run of more than 10,000,000 device intervals, so the
benchmark raises that limit (MTIA_CLUSTER_LIMITS) for every run.

    .venv/bin/python benchmarks/bench_memory_span.py [--spans 10 1000 100000]
        [--requests 10000] [--checkout /work/main --checkout .] [--capacity-timeout 240]

``--capacity-timeout S`` also runs `capacity` of an MTIA 1 server (HC3) with an SLO no rate
meets (p99 <= 1 us) per checkout, stopped after S seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "scenarios" / "rr-small.yaml"
LIMITS = "device_intervals=1000000000"
CAPACITY = """name: cap
regions:
  - name: r
    pools:
      - {service: ranking, model: hc3, platform: mtia-1-server, hosts: 1}
"""


def command(
    checkout: Path, args: list[str], timeout: float | None = None
) -> tuple[float, float, bytes, int]:
    """(wall s, peak RSS MB, stdout, exit status) of `python -m mtia_cluster ARGS` run with
    `checkout` first on PYTHONPATH and as the working directory (which `-m` puts first on
    sys.path); a run past `timeout` is killed (status -9)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "MTIA_CLUSTER_LIMITS": LIMITS}
    exe = [sys.executable, "-m", "mtia_cluster", *args]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(exe, cwd=checkout, env=env, stdout=out, stderr=subprocess.DEVNULL)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                deadline = None
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, text, proc.returncode


def digests(run: Path) -> dict[str, str]:
    """SHA-256 of every data file of a results directory (manifest.json holds the run id,
    wall time and file list, so it differs by construction)."""
    out = {}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run).as_posix()
        if path.is_file() and (rel.endswith(".parquet") or rel == "summary.json"):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def generate(work: Path, span_s: float, n: int) -> Path:
    trace = work / f"t{span_s:g}.parquet"
    args = ["trace", "generate", "--service", "feed-ranking", "--region", "us-east"]
    args += ["--rate", str(n / span_s), "--requests", str(n), "-o", str(trace)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mtia_cluster", *args]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
    return trace


def warm(work: Path, checkouts: list[Path]) -> None:
    """One small run per checkout, with and without -o, untimed: numba compiles and caches
    its kernels (``cache=True``, next to the sources) the first time a tree runs them."""
    trace = generate(work, 1.0, 200)
    for checkout in checkouts:
        base = ["simulate", str(CONFIG), "--trace", str(trace), "--json"]
        command(checkout, base)
        command(checkout, [*base, "-o", str(work / "warm")])
        shutil.rmtree(work / "warm", ignore_errors=True)


def one_span(work: Path, span_s: float, args: argparse.Namespace) -> None:
    trace = generate(work, span_s, args.requests)
    base = ["simulate", str(CONFIG), "--trace", str(trace), "--set", "metrics_interval_ms=1000"]
    docs: dict[str, list[str]] = {"-o": [], "no -o": []}
    for checkout in args.checkouts:
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        wall_o, rss_o, _, rc_o = command(checkout, [*base, "-o", str(out), "--json"])
        files = json.dumps(digests(out), sort_keys=True) if rc_o == 0 else f"exit {rc_o}"
        docs["-o"].append(hashlib.sha256(files.encode()).hexdigest()[:12])
        wall, rss, stdout, rc = command(checkout, [*base, "--json"])
        docs["no -o"].append(hashlib.sha256(stdout).hexdigest()[:12] if rc == 0 else "?")
        print(
            f"  {span_s:>9,.0f} s  {checkout!s:<22} simulate -o: {rss_o:>8,.0f} MB "
            f"{wall_o:>7.1f} s (exit {rc_o}) | simulate: {rss:>8,.0f} MB {wall:>7.1f} s "
            f"(exit {rc})",
            flush=True,
        )
    for what, seen in docs.items():
        verdict = "same" if len(set(seen)) == 1 else "DIFFERENT"
        print(f"  {span_s:>9,.0f} s  outputs of {what} ({', '.join(seen)}): {verdict}")


def capacity(work: Path, args: argparse.Namespace) -> None:
    cfg = work / "cap.yaml"
    cfg.write_text(CAPACITY)
    cmd = ["capacity", str(cfg), "--service", "ranking", "--slo", "p99=1us"]
    cmd += ["--address", "inprocess"]
    for checkout in args.checkouts:
        wall, rss, _, rc = command(checkout, cmd, args.capacity_timeout)
        ended = "stopped at the timeout" if rc == -9 else f"exit {rc}"
        print(f"  capacity p99<=1us {checkout}: {rss:,.0f} MB, {wall:.1f} s ({ended})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spans", type=float, nargs="+", default=[10.0, 1_000.0, 100_000.0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--checkout", dest="checkouts", type=Path, action="append")
    ap.add_argument("--capacity-timeout", type=float, default=None)
    args = ap.parse_args()
    args.checkouts = [c.resolve() for c in (args.checkouts or [Path("/work/main"), ROOT])]
    with open("/proc/cpuinfo", encoding="ascii") as fh:
        cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    print(f"machine: {os.cpu_count()} vCPU, {cpu}; load {os.getloadavg()[0]:.1f}")
    print(f"{args.requests:,} requests, rr-small (72 accelerators), 1-s metrics intervals")
    work = Path(tempfile.mkdtemp(prefix="bench-memspan-"))
    try:
        warm(work, args.checkouts)
        for span in args.spans:
            one_span(work, span, args)
        if args.capacity_timeout:
            capacity(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
