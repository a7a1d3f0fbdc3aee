"""Hostile and careless inputs through the CLI (issue 11 item 4): exit code, first line of
stderr, peak RSS and wall time of each, as a markdown table. Never asserts.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/hostile_inputs.py [--only NAME] [--timeout 60]

Every input is built in a temporary directory (configs, traces, odd files) and run as its
own subprocess (`python -c "from mtia_cluster.cli.main import main; main()" ...`), with an
address-space cap (--cap-gb, default 4) so an input that still allocates without bound fails
with a MemoryError instead of taking the shared machine's memory. Peak RSS is the child's
`ru_maxrss` (os.wait4). The target (docs/hostile-inputs.md): exit 2 (1 for I/O), under 10 s
and 1 GB, and no traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
RR = "configs/scenarios/rr-small.yaml"  # service feed-ranking, one region us-east
LLM = "configs/scenarios/llm-small.yaml"  # service chat, one region us-east
DEMO_CFG, DEMO = "configs/scenarios/multi-region.yaml", "traces/demo.parquet"
DAY_NS = 86_400 * 10**9
INT64_MAX = 2**63 - 1
ENV = "MTIA_CLUSTER_LIMITS"


@dataclass(frozen=True)
class Case:
    """One hostile input: a name, what it is, and how to build its command line."""

    name: str
    what: str
    argv: Callable[[Path], list[str]]
    expect: int = 2  # 0: a valid input (a documented default, or a raised limit)
    env: tuple[tuple[str, str], ...] = ()  # extra environment, e.g. MTIA_CLUSTER_LIMITS


def _trace(
    path: Path, arrivals: list[int], service: str = "feed-ranking", **extra: list[object]
) -> Path:
    """A Parquet trace written raw (no validation), so bad contents reach the CLI."""
    n = len(arrivals)
    cols: dict[str, object] = {
        "request_id": pa.array(range(n), pa.int64()),
        "arrival_ns": pa.array(arrivals, pa.int64()),
        "service": pa.array([service] * n, pa.string()).dictionary_encode(),
    }
    if service == "feed-ranking" and "items" not in extra:
        cols["items"] = pa.array([100] * n, pa.int32())
    for name, values in extra.items():
        cols[name] = values if isinstance(values, pa.Array) else pa.array(values)
    pq.write_table(pa.table(cols), path)
    return path


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _rr_yaml(**pool: object) -> str:
    """rr-small with pool fields replaced (YAML flow values given as strings)."""
    fields = {"racks": "1", **{k: str(v) for k, v in pool.items()}}
    lines = "\n".join(f"        {k}: {v}" for k, v in fields.items())
    return (
        "name: hostile\nreport_interval_ms: 5\nmetrics_interval_ms: 100\n"
        "regions:\n  - name: us-east\n    pools:\n      - service: feed-ranking\n"
        f"        model: hc1\n        platform: mtia-2i-rack\n{lines}\n"
    )


def _laughs(levels: int = 9) -> str:
    """The billion-laughs document: 10**levels strings from a few hundred bytes."""
    out = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        out.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return _rr_yaml() + "\n".join(out) + "\n"


def _sim(cfg: str | Path, trace: Path, *extra: str) -> list[str]:
    return ["simulate", str(cfg), "--trace", str(trace), *extra]


# --- traces (each builder writes one file into the case's directory)
def t_ok(d: Path) -> Path:
    return _trace(d / "ok-rr.parquet", [i * 1_000_000 for i in range(50)])


def t_year(d: Path) -> Path:
    return _trace(d / "year.parquet", [0, 365 * DAY_NS])


def t_int64(d: Path) -> Path:
    return _trace(d / "extreme.parquet", [0, INT64_MAX])


def t_items_1e9(d: Path) -> Path:
    return _trace(d / "items.parquet", [0, 1000], items=[100, 10**9])


def t_items_int32(d: Path) -> Path:
    return _trace(d / "i.parquet", [0, 1], items=[1, 2**31 - 1])


def t_null_region(d: Path) -> Path:
    return _trace(d / "nullregion.parquet", [0, 1000, 2000], region=["us-east", None, None])


def t_tokens(input_tokens: int, output_tokens: int) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        return _trace(
            d / "tokens.parquet",
            [0, 1000],
            service="chat",
            input_tokens=pa.array([100, input_tokens], pa.int32()),
            output_tokens=pa.array([10, output_tokens], pa.int32()),
        )

    return build


def t_table(**override: pa.Array) -> Callable[[Path], Path]:
    return lambda d: _write_table(d / "t.parquet", **override)


def t_arrivals(*arrivals: int, **extra: list[object]) -> Callable[[Path], Path]:
    return lambda d: _trace(d / "a.parquet", list(arrivals), **extra)


def t_text(d: Path) -> Path:
    return _write(d / "t.parquet", "hello\n")


# --- command lines
Argv = Callable[[Path], list[str]]


def sim_cfg(text: str | bytes, *extra: str) -> Argv:
    """simulate a scenario file holding `text` on the small R&R trace."""
    return lambda d: _sim(_write(d / "c.yaml", text), t_ok(d), *extra)


def sim_set(*sets: str) -> Argv:
    """simulate rr-small with --set overrides on the small R&R trace."""
    return lambda d: _sim(RR, t_ok(d), *[a for s in sets for a in ("--set", s)])


def sim_trace(build: Callable[[Path], Path], cfg: str = RR) -> Argv:
    return lambda d: _sim(cfg, build(d))


def inspect(build: Callable[[Path], Path]) -> Argv:
    return lambda d: ["trace", "inspect", str(build(d))]


def replay(build: Callable[[Path], Path], cfg: Callable[[Path], str] = lambda d: RR) -> Argv:
    """replay in-process (--address inprocess: the replay path without starting Ray)."""
    return lambda d: [
        "replay",
        cfg(d),
        "--trace",
        str(build(d)),
        "-o",
        str(d / "out"),
        "--address",
        "inprocess",
    ]


def laughs_file(d: Path) -> str:
    return str(_write(d / "l.yaml", _laughs()))


def raised(limit: str) -> tuple[tuple[str, str], ...]:
    return ((ENV, limit),)


def cases() -> list[Case]:
    """The table's rows, in order."""
    bad_event = "events=[{at_s: 1.0e+30, kind: fail, region: us-east, hosts: [0]}]"
    deep = "[" * 100_000 + "]" * 100_000
    return [
        # --- sizes in the configuration
        Case("racks-1e6", "racks: 1000000 in the YAML", sim_cfg(_rr_yaml(racks="1000000"))),
        Case("set-racks-1e23", "--set …racks=10**23", sim_set(f"regions.0.pools.0.racks={10**23}")),
        Case(
            "accelerators-1e9",
            "accelerators: 1000000008",
            sim_cfg(_rr_yaml(racks="null", accelerators="1000000008")),
        ),
        Case(
            "report-1e-6ms",
            "--set report_interval_ms=0.000001",
            sim_set("report_interval_ms=0.000001"),
        ),
        Case(
            "metrics-1ns",
            "report and metrics intervals 1 ns",
            sim_set("report_interval_ms=0.000001", "metrics_interval_ms=0.000001"),
        ),
        Case(
            "windows-1us-demo",
            "1 µs windows over the 15-minute demo trace",
            lambda d: _sim(DEMO_CFG, DEMO, "--set", "report_interval_ms=0.001"),
        ),
        Case(
            "device-intervals",
            "5,000 racks, 1 us metrics intervals",
            sim_set(
                "regions.0.pools.0.racks=5000",
                "report_interval_ms=0.001",
                "metrics_interval_ms=0.001",
            ),
        ),
        Case("metrics-1e300", "metrics_interval_ms=1e300", sim_set("metrics_interval_ms=1.0e+300")),
        Case(
            "max-items-1e12",
            "batching.max_items=10**12",
            sim_set(f"regions.0.pools.0.batching.max_items={10**12}"),
        ),
        Case("racks-negative", "racks: -1", sim_set("regions.0.pools.0.racks=-1")),
        Case("weight-nan", "weight: .nan", sim_set("regions.0.weight=.nan")),
        Case("report-inf", "report_interval_ms: .inf", sim_set("report_interval_ms=.inf")),
        Case("seed-negative", "--seed -1", lambda d: _sim(RR, t_ok(d), "--seed", "-1")),
        Case("event-at-1e30", "a fleet event at 1e30 s", sim_set(bad_event)),
        Case(
            "zero-weights", "every region weight 0, no region column", sim_set("regions.0.weight=0")
        ),
        # --- YAML structure and files
        Case(
            "billion-laughs",
            "billion-laughs aliases, -o",
            lambda d: _sim(laughs_file(d), t_ok(d), "-o", str(d / "out")),
        ),
        Case(
            "recursive-alias",
            "a: &a [*a], -o",
            lambda d: _sim(
                _write(d / "r.yaml", _rr_yaml() + "a: &a [*a]\n"), t_ok(d), "-o", str(d / "out")
            ),
        ),
        Case("deep-nesting", "100,000 nested flow lists", sim_cfg(_rr_yaml() + f"a: {deep}\n")),
        Case("deep-set", "--set with 500 nested lists", sim_set("x=" + "[" * 500 + "]" * 500)),
        Case("non-utf8-yaml", "Latin-1 bytes in the YAML", sim_cfg(b"name: caf\xe9\n")),
        Case("binary-yaml", "a Parquet file given as the YAML", lambda d: _sim(t_ok(d), t_ok(d))),
        Case("empty-yaml", "an empty YAML file", sim_cfg("")),
        Case("list-yaml", "a YAML list at the top level", sim_cfg("- 1\n- 2\n")),
        Case(
            "missing-config", "config path does not exist", lambda d: _sim(d / "no.yaml", t_ok(d))
        ),
        Case("dir-config", "a directory as the config", lambda d: _sim(d, t_ok(d))),
        Case("bad-limits-env", "MTIA_CLUSTER_LIMITS=racks=5", sim_set(), env=raised("racks=5")),
        # --- traces
        Case("year-trace", "2 rows one year apart", sim_trace(t_year)),
        Case("int64-arrivals", "arrivals 0 and 2**63-1", sim_trace(t_int64)),
        Case("inspect-year", "trace inspect, one-year span", inspect(t_year)),
        Case("inspect-int64", "trace inspect, arrival 2**63-1", inspect(t_int64)),
        Case("items-1e9", "one request with items 10**9", sim_trace(t_items_1e9)),
        Case("inspect-items-2e9", "trace inspect, items 2**31-1", inspect(t_items_int32)),
        Case("input-tokens-1e9", "input_tokens 10**9", sim_trace(t_tokens(10**9, 10), LLM)),
        Case(
            "output-tokens-2e9", "output_tokens 2**31-1", sim_trace(t_tokens(100, 2**31 - 1), LLM)
        ),
        Case("empty-trace", "a trace with no rows", sim_trace(t_arrivals())),
        Case(
            "arrival-strings",
            "arrival_ns as strings",
            sim_trace(t_table(arrival_ns=pa.array(["0", "1"]))),
        ),
        Case(
            "duplicate-ids",
            "request_id 0, 0",
            sim_trace(t_table(request_id=pa.array([0, 0], pa.int64()))),
        ),
        Case("unsorted", "arrivals 10, 5", sim_trace(t_arrivals(10, 5))),
        Case("negative-arrival", "arrival -1", sim_trace(t_arrivals(-1, 5))),
        Case(
            "nan-items",
            "items as float with NaN",
            sim_trace(t_arrivals(0, 1, items=[1.0, math.nan])),
        ),
        Case(
            "unknown-service",
            "a service the config lacks",
            sim_trace(lambda d: _trace(d / "svc.parquet", [0, 1], service="nope")),
        ),
        Case("missing-trace", "trace path does not exist", lambda d: _sim(RR, d / "no.parquet")),
        Case("dir-trace", "a directory as the trace", lambda d: ["trace", "inspect", str(d)]),
        Case("text-trace", "a text file as the trace", sim_trace(t_text)),
        Case("truncated-trace", "a Parquet file cut in half", sim_trace(_truncated)),
        Case(
            "generate-1e12",
            "trace generate --rate 1e12 --duration 1e6",
            lambda d: [
                "trace",
                "generate",
                "--rate",
                "1e12",
                "--duration",
                "1e6",
                "-o",
                str(d / "g.pq"),
            ],
        ),
        Case("replay-year", "replay (in-process), one-year trace", replay(t_year)),
        Case("replay-laughs", "replay (in-process), billion laughs", replay(t_ok, laughs_file)),
        # --- valid inputs that used to fail: the documented default, or a raised limit
        Case("null-region-sim", "nulls in region (simulate)", sim_trace(t_null_region), 0),
        Case("null-region-inspect", "nulls in region (inspect)", inspect(t_null_region), 0),
        Case("null-region-replay", "nulls in region (replay)", replay(t_null_region), 0),
        Case(
            "raised-inspect-year",
            "inspect one-year trace, trace_span_s=4e7",
            inspect(t_year),
            0,
            raised("trace_span_s=4e7"),
        ),
        Case(
            "raised-inspect-items",
            "inspect items 2**31-1, items_per_request=3e9",
            inspect(t_items_int32),
            0,
            raised("items_per_request=3e9"),
        ),
        Case(
            "raised-items-1e8",
            "simulate items 10**8, items_per_request=1e9",
            sim_trace(lambda d: _trace(d / "i8.parquet", [0, 1000], items=[100, 10**8])),
            0,
            raised("items_per_request=1e9"),
        ),
    ]


def _write_table(path: Path, **override: pa.Array) -> Path:
    cols: dict[str, pa.Array] = {
        "request_id": pa.array([0, 1], pa.int64()),
        "arrival_ns": pa.array([0, 1], pa.int64()),
        "service": pa.array(["feed-ranking"] * 2).dictionary_encode(),
        "items": pa.array([1, 1], pa.int32()),
    }
    cols.update(override)
    pq.write_table(pa.table(cols), path)
    return path


def _truncated(d: Path) -> Path:
    full = _trace(d / "full.parquet", list(range(1000)))
    data = full.read_bytes()
    return _write(d / "cut.parquet", data[: len(data) // 2])


@dataclass
class Outcome:
    code: int | str
    first_line: str
    traceback: bool
    error_lines: int
    peak_mb: float
    wall_s: float


def run_case(case: Case, timeout_s: float, cap_gb: float) -> Outcome:
    """Build the input in a fresh temporary directory and run it as a subprocess."""
    with tempfile.TemporaryDirectory(prefix=f"hostile-{case.name}-") as tmp:
        d = Path(tmp)
        argv = case.argv(d)
        cmd = [sys.executable, "-c", "from mtia_cluster.cli.main import main; main()", *argv]
        cap = int(cap_gb * 2**30)

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        err_path = d / "stderr.txt"
        env = {k: v for k, v in os.environ.items() if k != ENV}  # default limits
        env.update({"PYTHONPATH": str(ROOT), "NO_COLOR": "1", **dict(case.env)})
        with open(err_path, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                preexec_fn=limit,
                start_new_session=True,
            )
            code: int | str = "?"
            usage = None
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    code = os.waitstatus_to_exitcode(status)
                    break
                if time.perf_counter() - started > timeout_s:
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    code = f"timeout {timeout_s:.0f} s"
                    break
                time.sleep(0.02)
            wall = time.perf_counter() - started
            proc.returncode = 0  # reaped above
        text = err_path.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        # the first line that says what happened (progress bars come before it)
        heads = ("error", "Error", "Usage", "Traceback")
        first = next((ln for ln in lines if ln.startswith(heads)), lines[-1] if lines else "")
        first = first.replace(str(d), "$TMP").replace(str(ROOT) + "/", "")
        return Outcome(
            code=code,
            first_line=first[:240],
            error_lines=sum(ln.startswith("error") for ln in lines),
            traceback="Traceback (most recent call last)" in text,
            peak_mb=usage.ru_maxrss / 1024 if usage is not None else float("nan"),
            wall_s=wall,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", action="append", help="Run only these case names.")
    ap.add_argument("--timeout", type=float, default=60.0, help="Seconds before a kill.")
    ap.add_argument("--cap-gb", type=float, default=4.0, help="Address-space cap per run.")
    args = ap.parse_args()
    chosen = [c for c in cases() if not args.only or c.name in args.only]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"load before: {os.getloadavg()[0]:.2f}\n")
    print("| # | input | what | want | exit | message (first error line of stderr) |", end="")
    print(" traceback | peak RSS MB | wall s |\n|---|---|---|---|---|---|---|---|---|")
    ok = 0
    for i, case in enumerate(chosen, 1):
        o = run_case(case, args.timeout, args.cap_gb)
        want = (1, 2) if case.expect else (0,)
        good = o.code in want and not o.traceback and o.wall_s < 10 and o.peak_mb < 1024
        ok += good
        line = o.first_line.replace("|", "\\|")
        print(
            f"| {i} | {case.name} | {case.what} | {case.expect} | {o.code} | `{line}` | "
            f"{'yes' if o.traceback else 'no'} | {o.peak_mb:.0f} | {o.wall_s:.1f} |",
            flush=True,
        )
    print(f"\n{ok}/{len(chosen)} meet the target; load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
